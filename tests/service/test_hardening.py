"""Hostile input against a real API process on PostgreSQL and Redis (issue 25): every bad input
gets a 4xx a person can act on, nothing is lost, and /health stays 200.

The API runs as its own process (``astropt api``); the tests write the jobs they need straight
into its store and its data directory, as a worker would.
"""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from jobkinds.kinds.embed import catalogue_dir
from state.store import repository, session_scope
from tests.service.stack import (
    Stack,
    postgres_schema,
    redis_url,
    service_env,
    tiny_spec,
    unique_queue,
    wait_until,
)

MAX_STREAMS = 3


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hardening")
    found = {name: base / name for name in ("data", "readonly", "outside", "logs")}
    for path in found.values():
        path.mkdir()
    return found


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="module")
def stack(roots: dict[str, Path], database: str) -> Iterator[Stack]:
    env = service_env(
        roots["data"],
        database,
        redis_url(),
        unique_queue(),
        ASTROPT_DATA_ROOTS=json.dumps([str(roots["readonly"])]),
        ASTROPT_MAX_EVENT_STREAMS=str(MAX_STREAMS),
    )
    running = Stack(env, roots["logs"])
    try:
        running.start_api()
        yield running
    finally:
        running.stop()
        print(running.logs())


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as c:
        yield c


def stored_job(
    database: str,
    roots: dict[str, Path],
    phase: str = "completed",
    kind: str = "train",
    files: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> tuple[str, Path]:
    """A job written into the store and the run directory as a worker leaves it."""
    job_id = uuid.uuid4().hex
    out_dir = roots["data"] / "runs" / job_id
    out_dir.mkdir(parents=True)
    for name, text in (files or {}).items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text(text)
    with session_scope(database) as session:
        repository.create_job(
            session, job_id, {**(spec or tiny_spec()), "kind": kind}, str(out_dir)
        )
        repository.upsert_points(
            session, job_id, [("train_loss", step, 1.0 / step) for step in range(1, 11)]
        )
        if phase != "queued":
            repository.finish_job(session, job_id, phase)
    return job_id, out_dir


@pytest.fixture(scope="module")
def catalogue_job(database: str, roots: dict[str, Path], stack: Stack) -> str:
    from astropt.science import write_catalogue

    job_id, out_dir = stored_job(database, roots, kind="embed")
    rng = np.random.default_rng(0)
    ids = [f"obj-{i:03d}" for i in range(64)]
    write_catalogue(
        catalogue_dir(out_dir),
        ids,
        rng.normal(size=(64, 8)),
        {"mag_r": rng.normal(size=64)},
        {"model": "test"},
    )
    return job_id


def healthy(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200


def npy_upload() -> dict[str, tuple[str, bytes, str]]:
    buffer = io.BytesIO()
    np.save(buffer, np.ones((4, 96, 96), np.float32))
    return {"file": ("galaxy.npy", buffer.getvalue(), "application/octet-stream")}


# 2. A NUL byte in a job id ---------------------------------------------------------------------

NUL_ID_REQUESTS = [
    ("GET", "/jobs/%00"),
    ("GET", "/jobs/%00/artifacts"),
    ("GET", "/jobs/%00/artifacts/loss.csv"),
    ("GET", "/jobs/%00/loss.png"),
    ("GET", "/jobs/%00/events"),
    ("GET", "/jobs/%00/checkpoints/best.zip"),
    ("POST", "/jobs/%00/cancel"),
    ("POST", "/jobs/%00/resume"),
    ("DELETE", "/jobs/%00"),
    ("GET", "/catalogues/%00"),
    ("GET", "/catalogues/%00/catalogue.parquet"),
    ("GET", "/catalogues/%00/outliers"),
    ("GET", "/catalogues/%00/map.png"),
    ("GET", "/jobs/compare.png?ids=%00"),
    ("GET", "/ui/jobs/%00"),
    ("GET", "/ui/catalogues/%00"),
]


def test_a_nul_byte_in_a_job_id_is_not_found_on_postgresql(client: httpx.Client) -> None:
    answers = {f"{method} {url}": client.request(method, url) for method, url in NUL_ID_REQUESTS}
    answers["POST /catalogues/%00/probe"] = client.post(
        "/catalogues/%00/probe", json={"labels": ["mag_r"]}
    )
    for path in ("/reconstruct", "/embed", "/predict"):
        answers[f"POST {path} job_id=NUL"] = client.post(
            path, files=npy_upload(), data={"job_id": "\x00"}
        )
    wrong = {
        name: (r.status_code, r.text[:120]) for name, r in answers.items() if r.status_code != 404
    }
    assert not wrong, wrong
    assert "not found" in answers["GET /jobs/%00"].json()["detail"]
    healthy(client)


# 3, 4, 12. File paths: NUL bytes, over-long names, outside the roots ------------------------------


def _refusal(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 422, response.text[:300]
    issue = response.json()["detail"][0]
    return issue["field"], issue["msg"]


def test_nul_bytes_and_over_long_names_in_paths_are_422_naming_the_field(
    client: httpx.Client, roots: dict[str, Path], catalogue_job: str, database: str
) -> None:
    data, readonly = roots["data"], roots["readonly"]
    long_name = "a" * 300
    finetune = {
        "kind": "finetune",
        "finetune": {"init": {"path": f"{readonly}/ck\x00pt"}, "labels": ["mag_r"]},
    }
    cases = [
        (
            tiny_spec(data={"source": "mock", "n_mock": 32, "path": f"{data}/mock\x00x"}),
            "data.path",
            "NUL",
        ),
        (tiny_spec(init_from={"path": f"{readonly}/ck\x00pt"}), "init_from.path", "NUL"),
        (tiny_spec(**finetune), "finetune.init.path", "NUL"),
        (
            tiny_spec(
                kind="finetune",
                finetune={
                    "init": "shipped",
                    "labels": ["mag_r"],
                    "label_table": f"{data}/{long_name}.csv",
                },
            ),
            "finetune.label_table",
            "at most 255",
        ),
        (
            tiny_spec(data={"source": "local", "path": f"{readonly}/{long_name}"}),
            "data.path",
            "at most 255",
        ),
        (tiny_spec(init_from={"path": f"{readonly}/{long_name}"}), "init_from.path", "at most 255"),
        (tiny_spec(codec=f"{readonly}/{long_name}"), "codec", "at most 255"),
    ]
    for spec, field, words in cases:
        got_field, message = _refusal(client.post("/jobs", json=spec))
        assert (got_field, words in message) == (field, True), message
    tables = {f"{data}/labels\x00.csv": "NUL", f"{data}/" + "b" * 4096: "at most"}
    for table, words in tables.items():
        got_field, message = _refusal(
            client.post(
                f"/catalogues/{catalogue_job}/probe",
                json={"labels": ["mag_r"], "label_table": table},
            )
        )
        assert got_field == "label_table" and words in message, message
    job_id, _ = stored_job(database, roots, files={"loss.csv": "step,loss\n"})
    assert client.get(f"/jobs/{job_id}/artifacts/{'c' * 300}").status_code == 404
    assert client.get(f"/jobs/{job_id}/artifacts/loss.csv").status_code == 200
    assert (
        client.get("/jobs", params={"limit": 500}).json()["total"] >= 1
    )  # nothing was queued by them
    healthy(client)


def test_a_path_outside_the_roots_gets_one_answer_whether_it_exists_or_not(
    client: httpx.Client, roots: dict[str, Path]
) -> None:
    missing = roots["outside"] / f"nothing-{uuid.uuid4().hex[:6]}"
    present = roots["outside"]
    for field, spec_of in [
        ("data.path", lambda p: tiny_spec(data={"source": "local", "path": str(p)})),
        ("codec", lambda p: tiny_spec(codec=str(p))),
        ("init_from.path", lambda p: tiny_spec(init_from={"path": str(p)})),
        (
            "finetune.label_table",
            lambda p: tiny_spec(
                kind="finetune",
                finetune={
                    "init": "shipped",
                    "labels": ["mag_r"],
                    "label_table": str(p / "labels.csv"),
                },
            ),
        ),
        (
            "data.path",
            lambda p: tiny_spec(
                data={"source": "local", "path": "/nonexist"}
                if p == missing
                else {"source": "local", "path": "/etc"}
            ),
        ),
    ]:
        answers = [
            _refusal(client.post("/jobs", json=spec_of(path))) for path in (missing, present)
        ]
        assert [f for f, _ in answers] == [field, field]
        texts = [
            m.replace(str(missing), "P")
            .replace(str(present), "P")
            .replace("/nonexist", "P")
            .replace("/etc", "P")
            for _, m in answers
        ]
        assert texts[0] == texts[1], texts
        assert "outside the allowed data roots" in texts[0] and "exist" not in texts[0]


# 5. Concurrent deletes ----------------------------------------------------------------------------


def test_concurrent_deletes_of_a_finished_job_give_one_204_and_404s(
    stack: Stack, database: str, roots: dict[str, Path]
) -> None:
    files = {f"val_images/step_{i:06d}.png": "x" * 100 for i in range(300)}
    for attempt in range(3):
        job_id, out_dir = stored_job(database, roots, files={**files, "loss.csv": "s\n"})
        barrier = threading.Barrier(20)
        statuses: list[int] = []

        def delete(
            jid: str = job_id, wait: threading.Barrier = barrier, seen: list[int] = statuses
        ) -> None:
            with stack.client() as c:
                wait.wait()
                seen.append(c.delete(f"/jobs/{jid}").status_code)

        threads = [threading.Thread(target=delete) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [204] + [404] * 19, (attempt, sorted(statuses))
        assert not out_dir.exists()
        with session_scope(database) as session:
            assert repository.get_job(session, job_id) is None
    with stack.client() as c:
        healthy(c)


# 8. Event-stream clients --------------------------------------------------------------------------


class Stream:
    """An open event stream (its line iterator kept: dropping it would close the connection)."""

    def __init__(self, stack: Stack, job_id: str):
        self.client = httpx.Client(base_url=stack.base_url, timeout=30)
        self.context = self.client.stream("GET", f"/jobs/{job_id}/events")
        response = self.context.__enter__()
        self.status = response.status_code
        self.retry_after = response.headers.get("Retry-After")
        self.body = response.read().decode() if self.status != 200 else ""
        self.lines = response.iter_lines() if self.status == 200 else iter(())
        first_event = next((line for line in self.lines if line.startswith("event:")), None)
        assert self.status != 200 or first_event == "event: progress", first_event

    def close(self) -> None:
        self.context.__exit__(None, None, None)
        self.client.close()


def test_event_streams_are_capped_and_the_api_stays_responsive(
    stack: Stack, client: httpx.Client, database: str, roots: dict[str, Path]
) -> None:
    job_id, _ = stored_job(database, roots, phase="queued")  # never finishes: its streams stay open
    streams = [Stream(stack, job_id) for _ in range(MAX_STREAMS)]
    try:
        assert [s.status for s in streams] == [200] * MAX_STREAMS
        refused = Stream(stack, job_id)
        refused.close()
        assert refused.status == 503 and int(refused.retry_after or 0) > 0, refused.body
        assert "ASTROPT_MAX_EVENT_STREAMS" in json.loads(refused.body)["detail"]
        assert client.get(f"/jobs/{job_id}").status_code == 200
        healthy(client)
        streams.pop(0).close()

        def reopened() -> bool:
            stream = Stream(stack, job_id)
            if stream.status == 200:
                streams.append(stream)
                return True
            stream.close()
            return False

        wait_until(reopened, timeout=30, what="a slot freed by a closed stream")
    finally:
        for stream in streams:
            stream.close()


# 11. Hard links -----------------------------------------------------------------------------------


def test_hard_links_in_a_run_directory_are_never_served(
    client: httpx.Client, database: str, roots: dict[str, Path]
) -> None:
    secret = roots["outside"] / "secret.txt"
    secret.write_text("PRIVATE")
    job_id, out_dir = stored_job(
        database, roots, files={"loss.csv": "step,loss\n", "checkpoints/best/config.json": "{}"}
    )
    os.link(secret, out_dir / "passwd.log")
    os.link(secret, out_dir / "checkpoints" / "best" / "notes.json")
    assert client.get(f"/jobs/{job_id}/artifacts/passwd.log").status_code == 404
    assert client.get(f"/jobs/{job_id}/artifacts/checkpoints/best/notes.json").status_code == 404
    listed = [f["path"] for f in client.get(f"/jobs/{job_id}/artifacts").json()["files"]]
    assert "loss.csv" in listed and "passwd.log" not in listed
    archive = client.get(f"/jobs/{job_id}/checkpoints/best.zip")
    assert (
        archive.status_code == 200
        and b"PRIVATE" not in archive.content
        and b"notes.json" not in archive.content
    )
    assert client.get(f"/jobs/{job_id}/artifacts/loss.csv").text == "step,loss\n"


# 13. Unparseable JSON, query locations --------------------------------------------------------


def test_undecodable_json_is_a_documented_422_and_query_errors_name_the_query(
    client: httpx.Client, database: str, roots: dict[str, Path], catalogue_job: str
) -> None:
    job_id, _ = stored_job(database, roots, phase="cancelled")
    body = b'{"max_iters": "\xff"}'
    headers = {"Content-Type": "application/json"}
    paths = {
        "/jobs": "post",
        f"/jobs/{job_id}/resume": "post",
        f"/catalogues/{catalogue_job}/probe": "post",
    }
    for path in paths:
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 422, (path, response.text)
        issue = response.json()["detail"][0]
        assert issue["type"] == "json_invalid" and "UTF-8" in issue["msg"]
    operations = client.get("/openapi.json").json()["paths"]
    for path in ("/jobs", "/jobs/{job_id}/resume", "/catalogues/{job_id}/probe"):
        assert "422" in operations[path]["post"]["responses"], path
        assert "400" not in operations[path]["post"]["responses"], path
    response = client.get(f"/catalogues/{catalogue_job}/outliers", params={"n": 10**6})
    assert response.status_code == 422
    issue = response.json()["detail"][0]
    assert issue["loc"] == ["query", "n"] and "ASTROPT_MAX_OUTLIERS" in issue["msg"]
    assert client.get(f"/catalogues/{catalogue_job}/outliers", params={"n": 3}).status_code == 200
    healthy(client)


# 1. Decompression bombs ---------------------------------------------------------------------------


def gzip_fits_bomb(inflated_mb: int = 300, padding_mb: float = 3.7) -> bytes:
    """A 4 MB gzip FITS that inflates past the 256 MB limit: a cube header, zeros, then noise
    (which does not compress) to give the file its size."""
    from astropy.io import fits

    header = fits.PrimaryHDU(np.zeros((4, 8, 8), np.float32)).header
    header["NAXIS1"] = header["NAXIS2"] = 8192
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [compressor.compress(header.tostring().encode())]
    zeros = bytes(1 << 20)
    parts += [compressor.compress(zeros) for _ in range(inflated_mb)]
    parts += [
        compressor.compress(np.random.default_rng(0).bytes(int(padding_mb * 2**20))),
        compressor.flush(),
    ]
    return b"".join(parts)


def _memory_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for process {pid}")


@pytest.mark.slow
def test_concurrent_decompression_bombs_leave_the_api_memory_bounded(
    stack: Stack, client: httpx.Client
) -> None:
    bomb = gzip_fits_bomb()
    assert 3.5 * 2**20 < len(bomb) < 4.5 * 2**20
    assert stack.api is not None
    pid = stack.api.pid

    def upload(_: int = 0) -> httpx.Response:
        with stack.client() as c:
            return c.post(
                "/reconstruct",
                files={"file": ("bomb.fits.gz", bomb, "application/gzip")},
                timeout=300,
            )

    first = upload()  # imports and first allocations happen before the baseline
    assert first.status_code == 413 and "inflates to more than" in first.json()["detail"], (
        first.text
    )
    before, peak_before = _memory_kb(pid, "VmRSS"), _memory_kb(pid, "VmHWM")
    samples = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(_memory_kb(pid, "VmRSS"))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(upload, range(32)))
    finally:
        done.set()
        sampler.join()
    peak_after = _memory_kb(pid, "VmHWM")
    peak = max(max(samples), peak_after if peak_after > peak_before else 0)
    growth_mb = (peak - before) / 1024
    print(
        f"API RSS before {before / 1024:.0f} MB, peak {peak / 1024:.0f} MB: growth {growth_mb:.0f} MB "
        "under 32 concurrent 4 MB gzip bombs"
    )
    assert sorted({a.status_code for a in answers}) == [413], [a.text[:100] for a in answers]
    assert growth_mb <= 1536, f"the API grew by {growth_mb:.0f} MB"
    healthy(client)
