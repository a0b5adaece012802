"""Security over real uvicorn + SQLite + Redis: job paths stay in the data roots, inference needs
the API key, slow bodies cannot hold the upload slots, checkpoint zips never leave the run."""

from __future__ import annotations

import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from astropt.data.mock import MANIFEST_NAME, write_mock_dataset
from service.app import create_app
from state.settings import Settings
from state.store import repository, session_scope
from tests.service.stack import API_KEY, ThreadedServer, redis_url, tiny_spec, unique_queue
from tests.service.test_api import forget_queue


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("security")
    found = {name: base / name for name in ("data", "readonly", "outside")}
    for path in found.values():
        path.mkdir()
    return found


@pytest.fixture(scope="module")
def settings(roots: dict[str, Path], monkeypatch_module: pytest.MonkeyPatch) -> Settings:
    monkeypatch_module.setenv("ASTROPT_INFERENCE_MAX_CONCURRENT_UPLOADS", "2")
    return Settings(
        data_dir=roots["data"],
        data_roots=[roots["readonly"]],
        broker_url=redis_url(),
        train_queue=unique_queue(),
        api_key=API_KEY,
        body_timeout_seconds=2.0,
    )


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings)) as running:
        yield running
    forget_queue(settings)


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        yield c


def _field_error(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 422, response.text
    issue = response.json()["detail"][0]
    return issue["field"], issue["msg"]


def test_job_paths_stay_inside_the_data_roots(client: httpx.Client, roots: dict[str, Path]) -> None:
    victim = roots["outside"] / "precious"
    victim.mkdir()
    (victim / MANIFEST_NAME).write_text("{}")
    (victim / "thesis.tex").write_text("years of work")
    mock_outside = tiny_spec(data={"source": "mock", "n_mock": 32, "path": str(victim)})
    field, message = _field_error(client.post("/jobs", json=mock_outside))
    assert field == "data.path" and str(roots["data"].resolve()) in message
    # A path that climbs out of the data directory is outside too.
    climbing = tiny_spec(
        data={"source": "mock", "n_mock": 32, "path": f"{roots['data']}/../outside/new"}
    )
    assert _field_error(client.post("/jobs", json=climbing))[0] == "data.path"
    local_outside = tiny_spec(data={"source": "local", "path": str(roots["outside"])})
    field, message = _field_error(client.post("/jobs", json=local_outside))
    assert field == "data.path" and str(roots["readonly"].resolve()) in message
    codec_outside = tiny_spec(codec=str(victim))
    assert _field_error(client.post("/jobs", json=codec_outside))[0] == "codec"
    hf_path = tiny_spec(data={"source": "hf", "hf_dataset": str(roots["outside"])})
    assert _field_error(client.post("/jobs", json=hf_path))[0] == "data.hf_dataset"
    assert sorted(p.name for p in victim.iterdir()) == [MANIFEST_NAME, "thesis.tex"]
    assert not (roots["outside"] / "new").exists()
    # Reading from the allow-listed read-only root, and a mock inside the data directory, are fine.
    assert (
        client.post(
            "/jobs", json=tiny_spec(data={"source": "local", "path": str(roots["readonly"])})
        ).status_code
        == 201
    )
    inside = tiny_spec(data={"source": "mock", "n_mock": 32, "path": str(roots["data"] / "mock-a")})
    assert client.post("/jobs", json=inside).status_code == 201


def test_a_directory_the_project_did_not_create_is_never_replaced(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / MANIFEST_NAME).write_text(json.dumps({"n": 1, "seed": 9}))
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a mock data set created by astropt"):
        write_mock_dataset(foreign, 8, 0, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"
    ours = write_mock_dataset(tmp_path / "ours", 8, 0, progress=False)
    assert write_mock_dataset(ours, 9, 0, progress=False) == ours  # ours may be regenerated
    assert json.loads((ours / MANIFEST_NAME).read_text())["n"] == 9


@pytest.mark.parametrize("path", ["/reconstruct", "/embed"])
def test_inference_requires_the_api_key(server: ThreadedServer, path: str) -> None:
    files = {"file": ("galaxy.npy", b"not really", "application/octet-stream")}
    without = httpx.post(f"{server.base_url}{path}", files=files, timeout=30)
    assert without.status_code == 401, without.text
    wrong = httpx.post(
        f"{server.base_url}{path}", files=files, headers={"X-API-Key": "nope"}, timeout=30
    )
    assert wrong.status_code == 401
    with_key = httpx.post(
        f"{server.base_url}{path}", files=files, headers={"X-API-Key": API_KEY}, timeout=30
    )
    assert with_key.status_code not in (401, 500)


def _slow_upload(port: int) -> socket.socket:
    """Headers and the start of a multipart body, then silence."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        f"POST /reconstruct HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    )
    sock.sendall(
        head.encode()
        + b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.npy"\r\n\r\n'
    )
    return sock


def test_slow_clients_cannot_hold_the_upload_slots(server: ThreadedServer) -> None:
    slow = [_slow_upload(server.port) for _ in range(6)]  # three times the slots
    try:
        # A prompt client is answered while the slow ones are still sending.
        files = {"file": ("galaxy.npy", b"junk", "application/octet-stream")}
        prompt = httpx.post(
            f"{server.base_url}/reconstruct",
            files=files,
            headers={"X-API-Key": API_KEY},
            timeout=httpx.Timeout(10.0),
        )
        assert 400 <= prompt.status_code < 500 and prompt.status_code not in (401, 408), prompt.text
        # Every slow client is told why, within the body timeout.
        for sock in slow:
            status_line = sock.recv(200).split(b"\r\n", 1)[0]
            assert b" 408 " in status_line, status_line
    finally:
        for sock in slow:
            sock.close()


def test_a_checkpoint_zip_never_follows_symlinks_out(
    server: ThreadedServer, settings: Settings, roots: dict[str, Path]
) -> None:
    secret_dir = roots["outside"] / "secret-checkpoint"
    secret_dir.mkdir()
    (secret_dir / "config.json").write_text("{}")
    (secret_dir / "id_rsa").write_text("PRIVATE")
    job_id = "5ec0" * 8
    out_dir = settings.runs_dir / job_id
    checkpoints = out_dir / "checkpoints"
    (checkpoints / "last").mkdir(parents=True)
    (checkpoints / "last" / "config.json").write_text("{}")
    (checkpoints / "last" / "model.safetensors").write_bytes(b"weights")
    (checkpoints / "last" / "leak").symlink_to(secret_dir / "id_rsa")
    (checkpoints / "last" / "leakdir").symlink_to(secret_dir)
    (checkpoints / "best").symlink_to(secret_dir)
    with session_scope(settings.resolved_database_url) as session:
        repository.create_job(session, job_id, tiny_spec(), str(out_dir))
    base = f"{server.base_url}/jobs/{job_id}/checkpoints"
    assert httpx.get(f"{base}/best.zip", timeout=30).status_code == 404
    response = httpx.get(f"{base}/last.zip", timeout=30)
    assert response.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert sorted(names) == ["last/config.json", "last/model.safetensors"]
