"""Data sets and the disk budget over real uvicorn + SQLite + Redis: GET /datasets lists what the
service made (never a user's directory), DELETE removes only that, the disk budget and the
checkpoint bound refuse with the numbers, and tokenise specs are checked like any job."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from astropt.data.mock import write_mock_dataset
from service.app import create_app
from state.settings import Settings
from tests.service.stack import API_KEY, ThreadedServer, redis_url, tiny_spec, unique_queue
from tests.service.test_api import forget_queue


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    found = {name: base / name for name in ("data", "user")}
    for path in found.values():
        path.mkdir()
    return found


@pytest.fixture(scope="module")
def settings(roots: dict[str, Path]) -> Settings:
    return Settings(
        data_dir=roots["data"],
        data_roots=[roots["user"]],
        broker_url=redis_url(),
        train_queue=unique_queue(),
        api_key=API_KEY,
        disk_budget_gb=0.15,
        max_checkpoints_per_job=100,
    )


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings)) as running:
        yield running
    forget_queue(settings)


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


def _refusal(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    return response.text


def test_the_disk_budget_refuses_a_job_whose_output_would_not_fit(client: httpx.Client) -> None:
    # 1,000 mock galaxies are about 136 MB: past a 150 MiB budget, before anything is written
    text = _refusal(client.post("/jobs", json=tiny_spec(data={"source": "mock", "n_mock": 1000})))
    estimate = float(re.search(r"would write about ([0-9.]+) GiB", text).group(1))
    assert 0.127 <= estimate < 0.3  # the mock set, plus the tiny model's five kept checkpoints
    assert "ASTROPT_DISK_BUDGET_GB" in text and "0.15 GiB budget" in text
    tokenise = {
        "kind": "tokenise",
        "codec": "random:0",
        "data": {"source": "mock", "n_mock": 64},
        "tokenise": {"limit": 64},
        "device": "cpu",
    }
    assert client.post("/jobs", json=tokenise).status_code == 201  # 64 galaxies fit
    too_many = {
        **tokenise,
        "data": {"source": "hf", "hf_dataset": "owner/name"},
        "tokenise": {"limit": 10**6},
    }
    text = _refusal(client.post("/jobs", json=too_many))  # a million galaxies of tokens do not
    assert "ASTROPT_DISK_BUDGET_GB" in text and "this tokenise job" in text


def test_a_spec_cannot_ask_for_a_checkpoint_every_step_of_a_long_run(client: httpx.Client) -> None:
    text = _refusal(client.post("/jobs", json=tiny_spec(max_iters=10_000, checkpoint_interval=1)))
    assert "ASTROPT_MAX_CHECKPOINTS_PER_JOB" in text and "checkpoint_interval >= 100" in text
    assert (
        client.post("/jobs", json=tiny_spec(max_iters=10_000, checkpoint_interval=100)).status_code
        == 201
    )


def test_tokenise_specs_are_checked_like_any_job(client: httpx.Client) -> None:
    base = {
        "kind": "tokenise",
        "codec": "random:0",
        "data": {"source": "mock", "n_mock": 32},
        "device": "cpu",
    }
    assert "needs a tokenise section" in _refusal(client.post("/jobs", json=base))
    ranks = client.post("/jobs", json={**base, "tokenise": {}, "resources": {"procs_per_node": 2}})
    assert (
        ranks.status_code == 201 and "no worker is online" in ranks.json()["waiting_reason"]
    )  # 2 ranks
    assert "shard_size" in _refusal(
        client.post("/jobs", json={**base, "tokenise": {"shard_size": 1}})
    )
    created = client.post("/jobs", json={**base, "tokenise": {"shard_size": 16}})
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["kind"] == "tokenise" and job["progress"]["max_iters"] == 32  # galaxies to write


def test_datasets_lists_what_the_service_made_and_deletes_only_that(
    client: httpx.Client, roots: dict[str, Path]
) -> None:
    data, user = roots["data"], roots["user"]
    mock = write_mock_dataset(data / "mock" / "n16_seed3", 16, seed=3, progress=False)
    user_set = write_mock_dataset(user / "my-galaxies", 16, seed=4, progress=False)
    os.symlink(user_set, data / "mock" / "linked")  # a symlink planted in the service's folder
    (data / "tokens").mkdir(exist_ok=True)
    cache = data / "tokens" / "abc123-def456.npy"
    cache.write_bytes(b"\0" * 4096)
    stream = data / "tokens" / "streams" / "hf-0123abcd"  # a write-through data set being written
    stream.mkdir(parents=True)
    (stream / "progress").mkdir()

    listing = client.get("/datasets").json()
    by_id = {item["id"]: item for item in listing["items"]}
    assert by_id["mock-n16_seed3"]["kind"] == "mock" and by_id["mock-n16_seed3"]["n_galaxies"] == 16
    assert (
        by_id["mock-n16_seed3"]["bytes"] > 16 * 50_000
    )  # 4 x 152 x 152 float32 a galaxy, compressed
    assert by_id["cache-abc123-def456.npy"]["bytes"] == 4096
    assert (
        by_id["stream-hf-0123abcd"]["kind"] == "token_cache"
        and not by_id["stream-hf-0123abcd"]["complete"]
    )
    assert "cache-streams" not in by_id
    assert "mock-linked" not in by_id and not any(
        str(user) in item["path"] for item in listing["items"]
    )
    assert (
        listing["budget_bytes"] == int(0.15 * 2**30)
        and listing["used_bytes"] >= listing["total_bytes"]
    )

    page = client.get("/ui/datasets")
    assert page.status_code == 200 and 'data-dataset-id="mock-n16_seed3"' in page.text
    assert "mock-linked" not in page.text and str(user) not in page.text

    for bad in (
        "mock-linked",
        "mock-..",
        "mock-n16_seed3%2F..%2F..",
        "tokens-nothex",
        "cache-missing",
        "other-x",
    ):
        assert client.delete(f"/datasets/{bad}").status_code == 404, bad
    assert (user_set / "manifest.json").is_file() and (data / "mock" / "linked").is_symlink()
    assert (
        client.delete("/datasets/mock-n16_seed3", headers={"X-API-Key": "wrong"}).status_code == 401
    )
    assert client.delete("/datasets/mock-n16_seed3").status_code == 204
    assert not mock.exists() and client.delete("/datasets/mock-n16_seed3").status_code == 404
    assert (
        client.delete("/datasets/cache-abc123-def456.npy").status_code == 204 and not cache.exists()
    )
    assert (user_set / "manifest.json").is_file()  # the user's own set is untouched
