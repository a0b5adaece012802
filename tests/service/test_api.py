"""The HTTP API over real uvicorn + SQLite + Redis, with no worker consuming the queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from service.app import create_app
from state.settings import Settings
from state.store import repository, session_scope
from tests.service.stack import API_KEY, ThreadedServer, redis_url, tiny_spec, unique_queue


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("api-data"),
        broker_url=redis_url(),
        train_queue=unique_queue(),
        api_key=API_KEY,
        curve_max_points=10,
        max_iters_limit=5000,
        max_active_jobs=50,
    )


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings)) as running:
        yield running
    forget_queue(settings)


def forget_queue(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.resolved_broker_url)
    keys = list(client.scan_iter(match=f"*{settings.train_queue}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        yield c


def submit(client: httpx.Client, **overrides: object) -> dict:
    response = client.post("/jobs", json=tiny_spec(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def test_submit_returns_201_location_and_queues_a_message(
    client: httpx.Client, settings: Settings
) -> None:
    queue = redis.Redis.from_url(settings.resolved_broker_url)
    before = queue.llen(settings.train_queue)
    response = client.post("/jobs", json=tiny_spec(max_iters=12))
    assert response.status_code == 201
    body = response.json()
    assert response.headers["Location"] == f"/jobs/{body['id']}"
    assert body["phase"] == "queued"
    assert body["progress"] == {
        "iteration": 0,
        "max_iters": 12,
        "fraction": 0.0,
        "tokens_per_s": None,
        "eta_seconds": None,
        "mfu": None,
        "world_size": 1,
        "effective_batch_size": 2,
    }
    assert body["waiting_reason"] == "waiting for a worker with 1 device(s): no worker is online"
    assert body["spec"]["out_dir"] == str(settings.runs_dir / body["id"])
    assert queue.llen(settings.train_queue) == before + 1
    message = json.loads(queue.lindex(settings.train_queue, 0))
    assert message["headers"]["task"] == "astropt.train"
    assert client.get(response.headers["Location"]).json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"model": {"n_layer": 1, "n_head": 4, "n_embd": 30}}, "model", "divisible by n_head"),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"learning_rate": 0.1}, "learning_rate", "Extra inputs are not permitted"),
        ({"max_iters": 10_000}, "max_iters", "limit of 5000"),
        ({"codec": "random:abc"}, "codec", "integer seed"),
        ({"data": {"source": "local"}}, "data", "data.path is required"),
    ],
)
def test_bad_spec_gets_422_with_field_and_reason(
    client: httpx.Client, change: dict, field: str, reason: str
) -> None:
    spec = tiny_spec()
    spec.update(change)
    response = client.post("/jobs", json=spec)
    assert response.status_code == 422
    issues = response.json()["detail"]
    assert any(issue["field"] == field and reason in issue["msg"] for issue in issues), issues


def test_malformed_json_is_422_not_500(client: httpx.Client) -> None:
    response = client.post(
        "/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/loss.png"),
        ("GET", "/events"),
        ("GET", "/artifacts"),
        ("GET", "/artifacts/loss.csv"),
        ("GET", "/checkpoints/best.zip"),
        ("POST", "/cancel"),
        ("POST", "/resume"),
        ("DELETE", ""),
    ],
)
def test_unknown_job_is_404(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, f"/jobs/0123456789abcdef0123456789abcdef{path}")
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/jobs"),
        ("POST", "/jobs/x/cancel"),
        ("POST", "/jobs/x/resume"),
        ("DELETE", "/jobs/x"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_mutations_need_the_api_key(
    server: ThreadedServer, method: str, path: str, key: str | None
) -> None:
    headers = {"X-API-Key": key} if key else {}
    response = httpx.request(method, server.base_url + path, json=tiny_spec(), headers=headers)
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]


def test_reads_need_no_key(server: ThreadedServer) -> None:
    assert httpx.get(f"{server.base_url}/jobs").status_code == 200
    assert httpx.get(f"{server.base_url}/health").status_code == 200


def test_list_filters_by_phase_and_paginates(client: httpx.Client) -> None:
    ids = [submit(client)["id"] for _ in range(3)]
    assert client.post(f"/jobs/{ids[0]}/cancel").json()["phase"] == "cancelled"
    cancelled = client.get("/jobs", params={"phase": "cancelled"}).json()
    assert ids[0] in [item["id"] for item in cancelled["items"]]
    assert all(item["phase"] == "cancelled" for item in cancelled["items"])
    page = client.get("/jobs", params={"limit": 2, "offset": 0}).json()
    second = client.get("/jobs", params={"limit": 2, "offset": 2}).json()
    assert len(page["items"]) == 2 and page["total"] >= 3
    assert not {i["id"] for i in page["items"]} & {i["id"] for i in second["items"]}
    assert page["items"][0]["id"] == ids[-1]  # newest first
    assert client.get("/jobs", params={"phase": "bogus"}).status_code == 422


def test_cancel_delete_and_resume_rules(client: httpx.Client, settings: Settings) -> None:
    job = submit(client)
    assert client.delete(f"/jobs/{job['id']}").status_code == 409  # still queued
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 202
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 409  # already cancelled
    resume = client.post(f"/jobs/{job['id']}/resume", json={"max_iters": 50})
    assert resume.status_code == 409 and "no checkpoint" in resume.json()["detail"]
    run_dir = settings.runs_dir / job["id"]
    run_dir.mkdir(parents=True)
    (run_dir / "loss.csv").write_text("step,train_loss\n")
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert not run_dir.exists()
    assert client.get(f"/jobs/{job['id']}").status_code == 404


def test_init_from_takes_the_checkpoints_shape_or_names_what_differs(
    client: httpx.Client, settings: Settings
) -> None:
    from astropt.checkpoints import read_meta
    from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

    shape = read_meta(SHIPPED_MODEL_DIR)["model_args"]

    warm = {k: v for k, v in tiny_spec().items() if k not in ("model", "codec")}
    created = client.post("/jobs", json={**warm, "init_from": "shipped", "init_from_dir": "/etc"})
    assert created.status_code == 201, created.text
    spec = client.get(f"/jobs/{created.json()['id']}").json()["spec"]
    assert spec["init_from"] == "shipped" and spec["init_from_dir"] == str(SHIPPED_MODEL_DIR)
    assert (spec["model"]["n_layer"], spec["model"]["n_embd"], spec["codec"]) == (
        shape["n_layer"],
        shape["n_embd"],
        "shipped",
    )
    # A set field that differs: a 422 naming each of them, before anything is queued.
    mismatch = client.post("/jobs", json={**tiny_spec(), "init_from": "shipped"})
    assert mismatch.status_code == 422
    issue = mismatch.json()["detail"][0]
    assert issue["field"] == "model.n_layer"
    for text in (
        f"model.n_layer is 1 here but {shape['n_layer']}",
        f"model.n_head is 2 here but {shape['n_head']}",
        f"model.n_embd is 32 here but {shape['n_embd']}",
        "codec is 'random:0' here but 'shipped'",
    ):
        assert text in issue["msg"], issue["msg"]
    refusals = [
        ({"job": "0123abcd"}, "init_from.job", "not found"),
        ({"job": created.json()["id"], "checkpoint": "best"}, "init_from.checkpoint", "best"),
        ({"path": "/etc"}, "init_from.path", "outside the allowed data roots"),
        ({"path": str(settings.data_dir / "notes")}, "init_from", "is not an astropt checkpoint"),
    ]
    (settings.data_dir / "notes").mkdir()
    (settings.data_dir / "notes" / "config.json").write_text("{}")
    for init, field, text in refusals:
        refused = client.post("/jobs", json={**warm, "init_from": init})
        assert refused.status_code == 422, (init, refused.text)
        assert refused.json()["detail"][0]["field"] == field and text in refused.text, refused.text
    fine_tune = {
        "kind": "finetune",
        "init_from": "shipped",
        "finetune": {"init": "shipped", "labels": ["mag_r"]},
    }
    assert client.post("/jobs", json=fine_tune).status_code == 422
    # Without init_from, a directory sent by the client is never what a worker loads.
    plain = client.post(
        "/jobs", json={**tiny_spec(), "init_from_dir": str(SHIPPED_MODEL_DIR)}
    ).json()
    assert client.get(f"/jobs/{plain['id']}").json()["spec"]["init_from_dir"] is None


def test_artifacts_are_served_without_path_traversal(
    client: httpx.Client, settings: Settings
) -> None:
    job = submit(client)
    run_dir = settings.runs_dir / job["id"]
    (run_dir / "val_images").mkdir(parents=True)
    (run_dir / "val_images" / "step_000010.png").write_bytes(b"\x89PNG fake")
    (run_dir / "checkpoints" / "last.tmp-abc").mkdir(parents=True)
    secret = settings.runs_dir / "secret.txt"
    secret.write_text("do not serve")
    listing = client.get(f"/jobs/{job['id']}/artifacts").json()
    assert [(f["path"], f["kind"], f["size"]) for f in listing["files"]] == [
        ("val_images/step_000010.png", "val_image", 9)
    ]
    assert client.get(listing["files"][0]["download_url"]).content == b"\x89PNG fake"
    for attempt in [
        "..%2Fsecret.txt",
        "val_images%2F..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
    ]:
        response = client.get(f"/jobs/{job['id']}/artifacts/{attempt}")
        assert response.status_code == 404, attempt
        assert b"do not serve" not in response.content
    assert client.get(f"/jobs/{job['id']}/checkpoints/..%2F..%2Fsecret.zip").status_code == 404
    assert client.get(f"/jobs/{job['id']}/checkpoints/best.zip").status_code == 404


def test_curves_since_and_downsampling(client: httpx.Client, settings: Settings) -> None:
    job = submit(client, max_iters=100)
    with session_scope(settings.resolved_database_url) as session:
        repository.upsert_points(
            session, job["id"], [("train_loss", s, 10.0 - s / 20) for s in range(1, 101)]
        )
        repository.upsert_points(
            session, job["id"], [("val_loss", s, 9.0 - s / 50) for s in (20, 40, 60)]
        )
    full = client.get(f"/jobs/{job['id']}").json()["curves"]
    assert full["downsampled"] is True
    assert len(full["train_loss"]["steps"]) == 10  # curve_max_points
    assert full["train_loss"]["steps"][0] == 1 and full["train_loss"]["steps"][-1] == 100
    assert full["val_loss"]["steps"] == [20, 40, 60]
    recent = client.get(f"/jobs/{job['id']}", params={"since": 95}).json()["curves"]
    assert recent["train_loss"]["steps"] == [96, 97, 98, 99, 100]
    assert recent["train_loss"]["values"] == pytest.approx([10.0 - s / 20 for s in range(96, 101)])
    assert recent["val_loss"]["steps"] == [] and recent["downsampled"] is False
    png = client.get(f"/jobs/{job['id']}/loss.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"


def test_events_stream_ends_when_the_job_is_finished(
    client: httpx.Client, settings: Settings
) -> None:
    job = submit(client)
    with session_scope(settings.resolved_database_url) as session:
        repository.upsert_points(session, job["id"], [("train_loss", 1, 9.2), ("lr", 1, 1e-3)])
        repository.finish_job(session, job["id"], "failed", "RuntimeError: out of memory")
    with client.stream("GET", f"/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[0].startswith("event: progress")
    progress = json.loads(events[0].split("data: ", 1)[1])
    assert (
        progress["phase"] == "failed"
        and progress["failure_reason"] == "RuntimeError: out of memory"
    )
    assert progress["curves"]["train_loss"] == {"steps": [1], "values": [9.2]}
    assert events[-1].startswith("event: end")


def test_health_metrics_and_docs(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["database"] == "ok" and health["broker"] == "ok"
    metrics = client.get("/metrics").text
    assert 'astropt_jobs{phase="queued"}' in metrics
    assert "astropt_http_requests_total" in metrics
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    examples = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    assert list(examples) == [
        "tiny-cpu",
        "gpu-aion-base",
        "finetune-lora",
        "shipped-warm-start",
        "embed-mock",
    ]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            assert (
                "200" in operation["responses"]
                or "201" in operation["responses"]
                or "202" in operation["responses"]
                or "204" in operation["responses"]
            )


def test_health_reports_an_unreachable_broker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    with ThreadedServer(create_app(settings)) as running:
        response = httpx.get(f"{running.base_url}/health", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert (
        body["status"] == "degraded"
        and body["database"] == "ok"
        and body["broker"].startswith("error")
    )


def test_submit_with_the_broker_down_is_503_and_recorded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    with ThreadedServer(create_app(settings)) as running:
        response = httpx.post(f"{running.base_url}/jobs", json=tiny_spec(), timeout=60)
        assert response.status_code == 503
        listed = httpx.get(f"{running.base_url}/jobs").json()["items"]
    assert listed[0]["phase"] == "failed" and "broker" in listed[0]["failure_reason"]


def test_too_many_active_jobs_is_429(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, broker_url=redis_url(), train_queue=unique_queue(), max_active_jobs=1
    )
    with ThreadedServer(create_app(settings)) as running:
        first = httpx.post(f"{running.base_url}/jobs", json=tiny_spec(), timeout=30)
        second = httpx.post(f"{running.base_url}/jobs", json=tiny_spec(), timeout=30)
        assert first.status_code == 201
        assert second.status_code == 429 and "limit 1" in second.json()["detail"]
        httpx.post(f"{running.base_url}/jobs/{first.json()['id']}/cancel", timeout=30)
        assert (
            httpx.post(f"{running.base_url}/jobs", json=tiny_spec(), timeout=30).status_code == 201
        )
    forget_queue(settings)
