"""Memory under concurrent uploads, over real HTTP: a queued request holds only its 96x96
crop, the queue is bounded by image bytes, and refusals say when to come back (Retry-After)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.inference.engine import InferenceEngine
from state.settings import InferenceSettings, Settings
from tests.service.test_inference_http import _add_job, _cube, _free_port, _npy

pytestmark = pytest.mark.slow
CROP_BYTES = 4 * 96 * 96 * 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("svc")
    settings = Settings(data_dir=root)
    app = create_app(settings, publish=lambda job_id: None, check_broker=lambda: None)
    # Room for one queued crop, not for one uncropped 160x160 image (409,600 bytes).
    engine_settings = InferenceSettings(
        max_queued_mb=1.5 * CROP_BYTES / 2**20,
        max_concurrent_uploads=1,
        max_waiting_uploads=0,
        max_wait_ms=0.0,
        torch_threads=1,
    )
    app.state.inference_engine = InferenceEngine(engine_settings, app.state.metrics.registry)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    job_id = _add_job(settings, root / "runs" / "done", "completed", with_checkpoint=True)
    loop = server.servers[0].get_loop()  # the server's event loop, to hold an upload slot from here
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
        yield client, app, port, job_id, loop
    server.should_exit = True
    thread.join(10)
    app.state.inference_engine.close()


def test_a_large_upload_is_queued_as_its_crop_only(server):
    client, app, _, job_id, _ = server
    response = client.post(
        "/reconstruct",
        files={"file": ("g.npy", _npy(_cube(side=160)))},
        data={"job_id": job_id, "mode": "codec", "format": "json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["shape"] == [4, 96, 96]
    assert app.state.inference_engine.stats()["queued_bytes"] == 0


def test_a_full_byte_budget_answers_503_with_retry_after(server):
    client, app, _, job_id, _ = server
    roomy = app.state.inference_engine
    # A budget smaller than one crop: the queue is "full" for every request.
    tight = InferenceEngine(
        InferenceSettings(max_queued_mb=0.5 * CROP_BYTES / 2**20, torch_threads=1)
    )
    app.state.inference_engine = tight
    try:
        response = client.post(
            "/reconstruct",
            files={"file": ("g.npy", _npy(_cube(side=160)))},
            data={"job_id": job_id, "mode": "codec"},
        )
    finally:
        app.state.inference_engine = roomy
        tight.close()
    assert response.status_code == 503 and "would pass the limit" in response.json()["detail"]
    assert int(response.headers["Retry-After"]) >= 1


def test_a_slow_client_does_not_hold_the_upload_slot(server):
    """The body is read before a parse slot is taken: a client that sends half a body and stops
    (here with the only slot configured) does not block anyone else's upload."""
    client, app, port, job_id, _ = server
    body = _npy(_cube(side=160))
    boundary = "bound"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="g.npy"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    length = len(head) + len(body) + len(f"\r\n--{boundary}--\r\n")
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(
            f"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
            + head
        )
        served = client.post("/embed", files={"file": ("g.npy", body)}, data={"job_id": job_id})
        assert served.status_code == 200, served.text
        slow.sendall(body + f"\r\n--{boundary}--\r\n".encode())
        assert slow.recv(12) == b"HTTP/1.1 200"


def test_uploads_beyond_the_waiting_bound_get_429_with_retry_after(server):
    """Bodies waiting for a parse slot are held in memory, so how many may wait is bounded:
    with the one slot taken and no waiting allowed, an upload is refused with Retry-After."""
    client, app, _, job_id, loop = server
    body = _npy(_cube(side=160))
    assert (
        client.post("/embed", files={"file": ("g.npy", body)}, data={"job_id": job_id}).status_code
        == 200
    )
    slots = app.state.inference_upload_slots
    asyncio.run_coroutine_threadsafe(slots.acquire(), loop).result(
        10
    )  # as a parse in progress would
    try:
        refused = client.post("/embed", files={"file": ("g.npy", body)}, data={"job_id": job_id})
    finally:
        loop.call_soon_threadsafe(slots.release)
    assert refused.status_code == 429 and "waiting" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    after = client.post("/embed", files={"file": ("g.npy", body)}, data={"job_id": job_id})
    assert after.status_code == 200, after.text
