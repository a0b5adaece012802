"""POST /reconstruct and /embed over real HTTP (uvicorn + httpx) with a tiny checkpoint."""

from __future__ import annotations

import asyncio
import gzip
import io
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from astropy.io import fits
from PIL import Image

from astropt.checkpoints import save_checkpoint
from astropt.codec import load_codec
from astropt.inference.render import png_size
from astropt.model import GPT, GPTConfig
from service.app import create_app
from service.inference.engine import InferenceEngine
from service.inference.routes import SHIPPED_MODEL_WEIGHTS
from state.settings import InferenceSettings, Settings
from state.store import session_scope
from state.store.models import utcnow
from state.store.repository import create_job

pytestmark = pytest.mark.slow
UPLOAD_LIMIT_MB = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _add_job(
    settings: Settings,
    run_dir: Path,
    phase: str,
    with_checkpoint: bool,
    fingerprint: str | None = None,
) -> str:
    job_id = uuid.uuid4().hex
    if with_checkpoint:
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=576))
        codec = load_codec("random:0").info.to_dict()
        codec["fingerprint"] = fingerprint or codec["fingerprint"]
        save_checkpoint(run_dir / "checkpoints" / "best", model, meta={"codec": codec})
    with session_scope(settings.resolved_database_url) as session:
        job = create_job(session, job_id, {"max_iters": 1}, str(run_dir))
        job.phase = phase
        job.finished_at = utcnow() if phase == "completed" else None
    return job_id


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("svc")
    settings = Settings(data_dir=root)
    app = create_app(settings, publish=lambda job_id: None, check_broker=lambda: None)
    engine_settings = InferenceSettings(
        max_batch_size=8,
        max_wait_ms=300.0,
        max_upload_mb=UPLOAD_LIMIT_MB,
        max_side=512,
        max_decompressed_mb=16.0,
        request_timeout_s=60.0,
        # the values are checked against a float32 forward pass; on a
        # CPU with native bf16, "auto" would compute in bf16
        precision="float32",
    )
    app.state.inference_engine = InferenceEngine(engine_settings, app.state.metrics.registry)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code < 500:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    with httpx.Client(base_url=base, timeout=60.0) as client:
        # Before any job has finished: the model shipped in the package answers, and says so
        # (without one, a clear 404 saying how to get a model).
        empty = client.post("/reconstruct", files={"file": ("g.npy", _npy(_cube()))})
        if SHIPPED_MODEL_WEIGHTS.is_file():
            assert empty.status_code == 200 and empty.headers["X-Job-Id"] == "shipped", empty.text
            assert empty.headers["X-Checkpoint"] == "shipped"
        else:
            assert empty.status_code == 404 and "POST /jobs" in empty.json()["detail"]
        running = _add_job(settings, root / "runs" / "running", "running", with_checkpoint=False)
        app.state.mismatched_job = _add_job(
            settings,
            root / "runs" / "other-codec",
            "completed",
            with_checkpoint=True,
            fingerprint="0123456789abcdef",
        )
        job_id = _add_job(settings, root / "runs" / "done", "completed", with_checkpoint=True)
        yield client, app, job_id, running
    server.should_exit = True
    thread.join(10)
    app.state.inference_engine.close()


def _cube(side: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(1.0, 0.3, (4, side, side)).astype(np.float32)


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _fits(*hdus) -> bytes:
    out = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(out)
    return out.getvalue()


def test_png_panel_with_metrics_in_headers(server):
    client, _, job_id, _ = server
    response = client.post(
        "/reconstruct",
        files={"file": ("g.fits", _fits(fits.PrimaryHDU(_cube())))},
        data={"job_id": job_id},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == png_size(4)
    assert 0.0 <= float(response.headers["X-Token-Accuracy"]) <= 1.0
    assert float(response.headers["X-MSE"]) > 0 and response.headers["X-Checkpoint"] == "best"
    single = client.post(
        "/reconstruct", files={"file": ("g.npy", _npy(_cube()))}, data={"panel": "single"}
    )
    assert (
        single.status_code == 200 and single.headers["X-Job-Id"] == job_id
    )  # latest completed job
    assert Image.open(io.BytesIO(single.content)).size == png_size(1)


def test_layouts_over_http_give_the_same_tokens(server):
    # Guards the upload readers: the same cube in four layouts (one HDU per band in another
    # order, tile-compressed, gzip, channels-last .npy) must reach the codec identically.
    client, _, _, _ = server
    cube = _cube(256)
    order = [(3, "Z"), (0, "G"), (2, "I"), (1, "R")]
    per_band = [fits.PrimaryHDU()] + [fits.ImageHDU(cube[i], name=b) for i, b in order]
    lossless = fits.CompImageHDU(cube.astype(">f4"), compression_type="GZIP_1", quantize_level=0.0)
    tokens = {}
    for name, payload, data in [
        ("griz.fits", _fits(*per_band), {}),
        ("c.fits.fz", _fits(fits.PrimaryHDU(), lossless), {}),
        ("c.fits.gz", gzip.compress(_fits(fits.PrimaryHDU(cube))), {}),
        ("last.npy", _npy(np.moveaxis(cube, 0, -1)), {"bands": "g,r,i,z"}),
    ]:
        response = client.post(
            "/reconstruct", files={"file": (name, payload)}, data={**data, "format": "json"}
        )
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        assert body["shape"] == [4, 96, 96] and len(body["tokens"]) == 576
        tokens[name] = body["tokens"]
    assert all(t == tokens["c.fits.gz"] for t in tokens.values()), {
        k: t[:8] for k, t in tokens.items()
    }
    grz = [fits.PrimaryHDU()] + [
        fits.ImageHDU(cube[i], name=b) for i, b in [(0, "G"), (1, "R"), (3, "Z")]
    ]
    assert (
        "DES-I is missing"
        in client.post("/reconstruct", files={"file": ("grz.fits", _fits(*grz))}).headers[
            "X-Warnings"
        ]
    )


def test_fits_and_npy_outputs_and_codec_mode(server):
    client, _, _, _ = server
    files = {"file": ("g.npy", _npy(_cube()))}
    out = client.post("/reconstruct", files=files, data={"format": "fits", "mode": "codec"})
    assert out.status_code == 200 and out.headers["X-Token-Accuracy"] == "nan"
    with fits.open(io.BytesIO(out.content)) as hdul:
        assert hdul[0].data.shape == (4, 96, 96) and hdul[0].header["BAND3"] == "DES-I"
        assert [h.name for h in hdul] == ["PRIMARY", "CODEC", "ORIGINAL"]
    npy = client.post("/reconstruct", files=files, data={"format": "npy"})
    assert np.load(io.BytesIO(npy.content)).shape == (4, 96, 96)


def test_completion_is_deterministic_with_a_seed(server):
    client, _, _, _ = server
    form = {
        "mode": "complete",
        "keep_fraction": "0.98",
        "seed": "11",
        "top_k": "20",
        "format": "json",
    }
    files = {"file": ("g.npy", _npy(_cube()))}
    first, second = (client.post("/reconstruct", files=files, data=form).json() for _ in range(2))
    assert first["model_tokens"] == second["model_tokens"]
    assert first["model_tokens"][:564] == first["tokens"][:564]


def test_embed_pooling_values(server):
    client, app, job_id, _ = server
    response = client.post(
        "/embed",
        files={"file": ("g.npy", _npy(_cube()))},
        data={"pooling": "both", "job_id": job_id},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == 32 and set(body["embedding"]) == {"mean", "last"}
    # the values, against an independent computation: codec tokens of the centre crop, the
    # model's training forward pass, and the hidden states its output head receives
    from astropt.checkpoints import load_checkpoint
    from astropt.constants import DEFAULT_BANDS

    model, _ = load_checkpoint(
        app.state.settings.runs_dir / "done" / "checkpoints" / "best", device="cpu"
    )
    model.eval()
    crop = _cube()[:, 32:128, 32:128][None]
    tokens = load_codec("random:0").encode(crop, DEFAULT_BANDS)
    seen = []
    hook = model.decoders["images_aion"].register_forward_pre_hook(
        lambda _, args: seen.append(args[0])
    )
    with torch.no_grad():
        positions = torch.arange(575).expand(1, 575)
        model({"images_aion": tokens[:, :-1], "images_aion_positions": positions})
    hook.remove()
    hidden = seen[0][0]
    np.testing.assert_allclose(
        body["embedding"]["mean"], hidden.mean(0).numpy(), atol=1e-4, rtol=1e-4
    )
    np.testing.assert_allclose(body["embedding"]["last"], hidden[-1].numpy(), atol=1e-4, rtol=1e-4)

    # the default: the central 4x4 of the 24x24 token grid (rows and columns 10..13), and any k
    default = client.post(
        "/embed", files={"file": ("g.npy", _npy(_cube()))}, data={"job_id": job_id}
    ).json()
    assert (default["pooling"], default["centre"], set(default["embedding"])) == (
        "centre",
        4,
        {"centre"},
    )
    central = [r * 24 + c for r in range(10, 14) for c in range(10, 14)]
    np.testing.assert_allclose(
        default["embedding"]["centre"], hidden[central].mean(0).numpy(), atol=1e-4, rtol=1e-4
    )
    wide = client.post(
        "/embed",
        files={"file": ("g.npy", _npy(_cube()))},
        data={"job_id": job_id, "pooling": "centre", "centre": "10"},
    ).json()
    central = [r * 24 + c for r in range(7, 17) for c in range(7, 17)]
    np.testing.assert_allclose(
        wide["embedding"]["centre"], hidden[central].mean(0).numpy(), atol=1e-4, rtol=1e-4
    )
    refused = client.post(
        "/embed",
        files={"file": ("g.npy", _npy(_cube()))},
        data={"pooling": "centre", "centre": "24"},
    )
    assert refused.status_code == 422 and "centre" in refused.text


def test_concurrent_requests_are_batched(server):
    # Synchronised on the batch filling up, not on a time window: with a wait far longer
    # than any test, the engine dispatches exactly when max_batch_size (8) requests are queued.
    client, app, _, _ = server
    engine = app.state.inference_engine
    before = dict(engine.batch_sizes)
    window, engine.settings.max_wait_ms = engine.settings.max_wait_ms, 600_000.0

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=60.0) as aclient:
            return await asyncio.gather(
                *[
                    aclient.post(
                        "/reconstruct",
                        files={"file": ("g.npy", _npy(_cube(seed=k)))},
                        data={"format": "json"},
                    )
                    for k in range(8)
                ]
            )

    try:
        responses = asyncio.run(burst())
    finally:
        engine.settings.max_wait_ms = window
    assert all(r.status_code == 200 for r in responses)
    new = {
        size: n - before.get(size, 0)
        for size, n in engine.batch_sizes.items()
        if n > before.get(size, 0)
    }
    assert new == {8: 1}
    assert {int(r.headers["X-Batch-Size"]) for r in responses} == {8}
    metrics = client.get("/metrics").text
    assert 'astropt_inference_batch_size_count{kind="reconstruct"}' in metrics
    assert client.get("/inference/stats").json()["batch_sizes"]


@pytest.mark.parametrize(
    ("files", "data", "status", "needle"),
    [
        ({"file": ("g.png", b"\x89PNG\r\n\x1a\nxxxx")}, {}, 415, "unsupported file type"),
        ({"file": ("g.fits", b"")}, {}, 422, "empty"),
        ({"file": ("g.fits", b"SIMPLE  = broken")}, {}, 422, "FITS"),
        ({"file": ("g.npy", _npy(np.zeros((4, 64, 64), np.float32)))}, {}, 422, "at least 96x96"),
        ({"file": ("g.npy", _npy(np.zeros((3, 128, 128), np.float32)))}, {}, 422, "none are named"),
        (
            {"file": ("g.npy", _npy(np.zeros((4, 128, 128), np.float32)))},
            {"bands": "u,g,r,i"},
            422,
            "unknown band",
        ),
        ({"file": ("g.npy", _npy(np.full((4, 128, 128), np.nan, np.float32)))}, {}, 422, "NaN"),
        # refused by the HTTP layer from Content-Length, before the body is read (the parser's
        # own 413 says "upload is N bytes", so this needle tells the two apart)
        (
            {"file": ("g.npy", _npy(np.zeros((4, 600, 600), np.float32)))},
            {},
            413,
            "upload too large",
        ),
        ({"file": ("g.gz", gzip.compress(b"\0" * 2**25))}, {}, 413, "inflates"),
        (
            {"file": ("g.npy", _npy(np.zeros((4, 128, 128), np.float32)))},
            {"mode": "dream"},
            422,
            "mode",
        ),
        (
            {"file": ("g.npy", _npy(np.zeros((4, 128, 128), np.float32)))},
            {"keep_fraction": "2"},
            422,
            "keep_fraction",
        ),
        (
            {"file": ("g.npy", _npy(np.zeros((4, 128, 128), np.float32)))},
            {"colour": "red"},
            422,
            "colour",
        ),
        (
            {"file": ("g.npy", _npy(np.zeros((4, 128, 128), np.float32)))},
            {"job_id": "nope"},
            404,
            "not found",
        ),
        (
            {"file": ("g.npy", _npy(np.zeros((4, 128, 128), np.float32)))},
            {"checkpoint": "step_x"},
            404,
            "checkpoint",
        ),
        ({}, {"mode": "codec"}, 422, "file"),
    ],
)
def test_bad_requests_get_clear_errors(server, files, data, status, needle):
    client, _, _, _ = server
    response = client.post("/reconstruct", files=files or {"other": ("x", b"1")}, data=data)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


def test_declared_oversized_upload_is_refused_before_its_body_is_sent(server):
    # Only the Content-Length check answers without the body: the server must reply 413
    # while the client has sent nothing but headers (the body-size check would wait for it).
    client, _, _, _ = server
    host, port = client.base_url.host, client.base_url.port
    head = (
        f"POST /reconstruct HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {100 * 2**20}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(head.encode())
        chunks = []
        while chunk := sock.recv(65536):  # the server closes after its answer
            chunks.append(chunk)
    reply = b"".join(chunks).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413") and "upload too large" in reply, reply[:300]


def test_chunked_upload_is_refused_while_it_is_read(server):
    # No Content-Length: only the check on the bytes read so far can refuse it; without it
    # the whole (malformed) body would be read and the multipart parser would answer 400.
    client, _, _, _ = server

    def body():
        yield b"--x\r\n"
        for _ in range(int(UPLOAD_LIMIT_MB * 16) + 8):
            yield b"\0" * 2**16

    response = client.post(
        "/reconstruct", content=body(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413 and "upload too large" in response.json()["detail"]


def test_an_unexpected_failure_in_the_model_is_a_422_not_a_bare_500(server, tmp_path):
    # Reaches the catch-all in service/inference/routes.py: a checkpoint whose token
    # embedding is too small for the codec's tokens (IndexError inside the model) loads
    # fine and then fails on the first image; the user gets 422 naming the error.
    from astropt.model import ModalityConfig

    client, app, _, _ = server
    torch.manual_seed(0)
    small = GPT(
        GPTConfig(
            n_layer=1,
            n_head=2,
            n_embd=32,
            block_size=576,
            modalities=[ModalityConfig("images_aion", input_size=100, vocab_size=100)],
        )
    )
    run_dir = app.state.settings.runs_dir / "tiny-vocab"
    save_checkpoint(
        run_dir / "checkpoints" / "best",
        small,
        meta={"codec": load_codec("random:0").info.to_dict()},
    )
    with session_scope(app.state.settings.resolved_database_url) as session:
        job = create_job(session, uuid.uuid4().hex, {"max_iters": 1}, str(run_dir))
        job.phase, job.finished_at, job_id = "completed", utcnow(), job.id
    response = client.post(
        "/embed", files={"file": ("g.npy", _npy(_cube()))}, data={"job_id": job_id}
    )
    assert response.status_code == 422, response.text
    assert "could not be processed" in response.json()["detail"]


def test_not_multipart_and_running_job(server):
    client, _, _, running = server
    response = client.post(
        "/reconstruct", content=b"\0" * 10, headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 415 and "multipart" in response.json()["detail"]
    response = client.post(
        "/embed", files={"file": ("g.npy", _npy(_cube()))}, data={"job_id": running}
    )
    assert response.status_code == 409 and "checkpoint=last" in response.json()["detail"]


def test_codec_mismatch_and_malformed_bodies(server):
    client, app, _, _ = server
    response = client.post(
        "/reconstruct",
        files={"file": ("g.npy", _npy(_cube()))},
        data={"job_id": app.state.mismatched_job},
    )
    assert response.status_code == 409 and "cannot be mixed" in response.json()["detail"]
    garbage = client.post(
        "/reconstruct",
        content=b"--x\r\nnonsense",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert garbage.status_code in (400, 422) and garbage.json()["detail"]
    two = client.post(
        "/reconstruct", files=[("file", ("a.npy", _npy(_cube()))), ("file", ("b.npy", b"1"))]
    )
    assert two.status_code == 400 and "malformed multipart" in two.json()["detail"]
    text = client.post("/reconstruct", data={"file": "not a file"}, files={"x": ("x", b"1")})
    assert text.status_code == 422 and "no file" in text.json()["detail"]
