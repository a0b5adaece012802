"""One user's string must not break the dashboard for everyone (issue 25, item 6): ``<!--<script>``
in a job spec or a failure reason, embedded in a page's JSON block, would make the HTML parser
swallow the rest of the page. Headless Chromium against uvicorn and a real store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.app import create_app
from state.settings import Settings
from state.store import repository, session_scope
from tests.service.stack import ThreadedServer, tiny_spec
from tests.ui.browser import artifact_dir, chromium_page, require_chromium

pytestmark = pytest.mark.slow
HOSTILE = "<!--<script>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadedServer, Settings]]:
    require_chromium()
    settings = Settings(data_dir=tmp_path_factory.mktemp("hostile-ui") / "data")
    settings.ensure_dirs()
    with ThreadedServer(
        create_app(settings, publish=lambda _: None, check_broker=lambda: None)
    ) as running:
        yield running, settings


def stored_job(settings: Settings, phase: str, reason: str | None = None, **spec: object) -> str:
    job_id = uuid.uuid4().hex
    out_dir = settings.runs_dir / job_id
    out_dir.mkdir(parents=True)
    with session_scope(settings.resolved_database_url) as session:
        repository.create_job(session, job_id, tiny_spec(**spec), str(out_dir))
        repository.upsert_points(
            session, job_id, [("train_loss", step, 2.0 / step) for step in range(1, 9)]
        )
        repository.finish_job(session, job_id, phase, reason)
    return job_id


def test_hostile_strings_in_a_spec_or_a_failure_reason_leave_the_pages_working(
    server: tuple[ThreadedServer, Settings], request: pytest.FixtureRequest
) -> None:
    running, settings = server
    failed = stored_job(settings, "failed", f"ValueError: {HOSTILE} in column {HOSTILE}")
    odd_spec = stored_job(
        settings,
        "completed",
        data={"source": "mock", "n_mock": 32, "image_column": f"{HOSTILE}x</script>"},
    )
    shots = artifact_dir(request.node.name)
    errors: list[str] = []
    with chromium_page() as page:
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{running.base_url}/ui/jobs")
        page.wait_for_function(
            "Number(document.querySelector('#jobs tbody').dataset.refreshed || 0) >= 1"
        )
        assert page.locator(f"tr[data-job-id='{failed}']").count() == 1
        page.screenshot(path=Path(shots) / "jobs.png")

        page.goto(f"{running.base_url}/ui/jobs/{odd_spec}")
        page.wait_for_function(
            "Number(document.querySelector('#loss-chart').dataset.points_train_loss || 0) == 8"
        )
        assert page.locator("#phase").inner_text() == "completed"
        assert "image_column" in page.locator("pre.spec").inner_text()

        page.goto(f"{running.base_url}/ui/jobs/{failed}")
        page.wait_for_function("document.querySelector('#failure-reason').textContent.length > 0")
        assert (
            page.locator("#failure-reason").inner_text()
            == f"ValueError: {HOSTILE} in column {HOSTILE}"
        )
        page.screenshot(path=Path(shots) / "job-failed.png", full_page=True)
    assert errors == []
