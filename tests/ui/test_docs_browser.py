"""/docs and /redoc in headless Chromium: everything from the app, nothing from outside."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis

from service.app import create_app
from state.settings import Settings
from tests.service.stack import API_KEY, ThreadedServer, redis_url, unique_queue
from tests.ui.browser import NetworkLog, artifact_dir, chromium_page


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("docs-data"),
        broker_url=redis_url(),
        train_queue=unique_queue(),
        api_key=API_KEY,
    )
    with ThreadedServer(create_app(settings)) as running:
        yield running
    client = redis.Redis.from_url(settings.resolved_broker_url)
    keys = list(client.scan_iter(match=f"*{settings.train_queue}*"))
    if keys:
        client.delete(*keys)


def operation_count(base_url: str) -> int:
    paths = httpx.get(f"{base_url}/openapi.json", timeout=10).json()["paths"]
    return sum(
        1
        for operations in paths.values()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    )


def test_swagger_ui_renders_every_operation_offline(
    server: ThreadedServer, request: pytest.FixtureRequest
) -> None:
    network = NetworkLog()
    expected = operation_count(server.base_url)
    with chromium_page(network) as page:
        page.goto(f"{server.base_url}/docs")
        page.wait_for_selector(".opblock", state="attached")
        page.wait_for_function(f"document.querySelectorAll('.opblock').length >= {expected}")
        assert page.locator(".opblock").count() == expected
        assert "AstroPT service" in page.locator(".info .title").inner_text()
        page.screenshot(path=artifact_dir(request.node.name) / "docs.png", full_page=True)
    assert network.outside(server.base_url) == []
    assert f"{server.base_url}/static/docs/swagger-ui-bundle.js" in network.urls
    assert f"{server.base_url}/openapi.json" in network.urls


def test_try_it_out_submits_the_first_example(
    server: ThreadedServer, request: pytest.FixtureRequest
) -> None:
    network = NetworkLog()
    with chromium_page(network) as page:
        page.goto(f"{server.base_url}/docs")
        page.get_by_role("button", name="Authorize").first.click()
        page.locator(".modal-ux input[type=text], .modal-ux input[type=password]").first.fill(
            API_KEY
        )
        page.locator(".modal-ux button.authorize").first.click()
        page.locator(".modal-ux button.btn-done").first.click()

        submit = page.locator(".opblock-post").filter(has=page.locator("[data-path='/jobs']")).first
        submit.locator(".opblock-summary").click()
        submit.get_by_role("button", name="Try it out").click()
        with page.expect_response(
            lambda r: r.url == f"{server.base_url}/jobs" and r.request.method == "POST"
        ) as info:
            submit.get_by_role("button", name="Execute").click()
        assert info.value.status == 201, info.value.text()
        status = submit.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip() == "201"
        status.scroll_into_view_if_needed()
        body = info.value.json()
        assert body["phase"] == "queued" and body["spec"]["device"] == "cpu"
        page.screenshot(path=artifact_dir(request.node.name) / "try-it-out.png", full_page=False)
    assert network.outside(server.base_url) == []


def test_redoc_renders_offline(server: ThreadedServer, request: pytest.FixtureRequest) -> None:
    network = NetworkLog()
    with chromium_page(network) as page:
        page.goto(f"{server.base_url}/redoc")
        page.get_by_text("Submit a training job").first.wait_for(state="attached")
        page.screenshot(path=artifact_dir(request.node.name) / "redoc.png")
    assert network.outside(server.base_url) == []


def test_docs_can_be_turned_off(tmp_path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(
        Settings(data_dir=tmp_path, docs_enabled=False),
        publish=lambda _: None,
        check_broker=lambda: None,
    )
    client = TestClient(app)
    for path in ("/docs", "/redoc", "/openapi.json", "/static/docs/swagger-ui-bundle.js"):
        assert client.get(path).status_code == 404, path
    assert client.get("/favicon.ico").headers["content-type"] == "image/png"


def test_submit_form_starts_from_the_openapi_examples(
    server: ThreadedServer, request: pytest.FixtureRequest
) -> None:
    examples = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()["paths"]["/jobs"][
        "post"
    ]["requestBody"]["content"]["application/json"]["examples"]
    first, second = list(examples)[:2]
    network = NetworkLog()
    with chromium_page(network) as page:
        page.goto(f"{server.base_url}/ui/submit")
        assert json.loads(page.locator("#spec").input_value()) == examples[first]["value"]
        page.select_option("#example", second)
        assert json.loads(page.locator("#spec").input_value()) == examples[second]["value"]
        page.select_option("#example", first)

        page.locator("#submit").click()  # no key yet: the API's 401 is shown, nothing is queued
        page.locator("#submit-error").wait_for()
        assert "401" in page.locator("#submit-error").inner_text()
        page.fill("#api-key", API_KEY)
        page.locator("#key-form button").click()
        page.locator("#submit").click()
        page.wait_for_url("**/ui/jobs/*")
        job_id = page.url.rsplit("/", 1)[1]
        assert page.locator("#phase").inner_text() == "queued"
        page.screenshot(path=artifact_dir(request.node.name) / "submitted.png")
    job = httpx.get(f"{server.base_url}/jobs/{job_id}", timeout=10).json()
    assert job["spec"]["max_iters"] == examples[first]["value"]["max_iters"]
    assert network.outside(server.base_url) == []
