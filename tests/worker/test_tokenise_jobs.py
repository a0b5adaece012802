"""Tokenise jobs end to end over a real API + Celery workers + SQLite + Redis: a job writes a token
data set whose tokens are the codec's, GET /datasets lists it, a worker killed mid-way leaves a
job that resumes with no duplicate and no missing galaxy, and a cancelled one resumes too."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobkinds.kinds.tokenise import tokens_dir
from tests.service.stack import (
    Stack,
    redis_url,
    run_dir,
    running_stack,
    service_env,
    unique_queue,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow
SEED, SHARD = 9, 16


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("tokenise-stack")
    env = service_env(
        tmp / "data",
        f"sqlite:///{tmp / 'jobs.db'}",
        redis_url(),
        unique_queue(),
        ASTROPT_WORKER_LEASE_SECONDS="4",
    )
    with running_stack(env, tmp / "logs") as stack:
        yield stack


def tokenise_spec(n: int, **section: object) -> dict:
    return {
        "kind": "tokenise",
        "codec": "shipped",
        "device": "cpu",
        "data": {"source": "mock", "n_mock": n, "mock_seed": SEED},
        "tokenise": {"shard_size": SHARD, "batch_size": 4, "num_workers": 1, **section},
    }


def mock_ids(n: int) -> list[str]:
    return [f"mock-s{SEED}-{i:08d}" for i in range(n)]


def _check_tokens_are_the_codecs(stack: Stack, dataset_dir: Path, n: int, rows: list[int]) -> None:
    import pyarrow as pa

    from astropt.codec import load_codec
    from astropt.data.mock import read_manifest
    from astropt.tokens import open_token_dataset

    dataset = open_token_dataset(dataset_dir)
    ids = dataset.object_ids()
    assert len(ids) == n and sorted(ids) == mock_ids(n)  # no duplicate, none missing
    mock = Path(stack.env["ASTROPT_DATA_DIR"]) / "mock" / f"n{n}_seed{SEED}"
    assert read_manifest(mock) is not None
    table = pa.concat_tables([pq.read_table(f) for f in sorted(mock.glob("*.parquet"))])
    codec = load_codec("shipped")
    position = {object_id: i for i, object_id in enumerate(ids)}
    for row in rows:
        image = table.slice(row, 1).column("image").to_pylist()[0]
        flux = np.asarray(image["flux"], dtype=np.float32)[None]
        expected = codec.encode(flux).numpy()[0]
        object_id = table.column("object_id")[row].as_py()
        assert np.array_equal(dataset.take([position[object_id]])[0], expected), object_id


def test_a_tokenise_job_writes_the_codecs_tokens_and_is_listed(stack: Stack) -> None:
    client = stack.client()
    created = client.post("/jobs", json=tokenise_spec(64))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    job = wait_for_job(client, job_id, {"completed"}, timeout=300)
    assert job["progress"]["iteration"] == 64 and job["progress"]["max_iters"] == 64
    _check_tokens_are_the_codecs(stack, tokens_dir(run_dir(stack, job_id)), 64, [0, 7, 31, 63])
    listing = {item["id"]: item for item in client.get("/datasets").json()["items"]}
    mine = listing[f"tokens-{job_id}"]
    assert mine["kind"] == "tokens" and mine["n_galaxies"] == 64 and mine["complete"]
    from astropt.codec import load_codec

    assert mine["codec"] == load_codec("shipped").info.fingerprint
    assert (
        64 * 1152 < mine["bytes"] < 64 * 4000
    )  # int16 tokens: ~1.2 KB a galaxy, not 370 KB of flux


def test_a_tokenise_job_whose_worker_is_killed_resumes_without_duplicates(stack: Stack) -> None:
    client = stack.client()
    n = 384  # one galaxy a codec call: 350 galaxies (tens of seconds) left when the kill lands
    job_id = client.post("/jobs", json=tokenise_spec(n, batch_size=1, num_workers=0)).json()["id"]
    wait_until(
        lambda: client.get(f"/jobs/{job_id}").json()["progress"]["iteration"] >= 2 * SHARD,
        timeout=300,
        what="the tokenise job to pass two shards",
        interval=0.2,
    )
    assert client.get(f"/jobs/{job_id}").json()["phase"] == "running"
    stack.kill_worker(stack.workers[-1])
    stack.start_worker()
    job = wait_for_job(client, job_id, {"completed"}, timeout=400)
    assert job["attempts"] == 2 and len(job["interruptions"]) == 1
    _check_tokens_are_the_codecs(stack, tokens_dir(run_dir(stack, job_id)), n, [0, 100, n - 1])


def test_a_cancelled_tokenise_job_resumes_after_its_last_shard(stack: Stack) -> None:
    client = stack.client()
    n = 256  # one galaxy a codec call: the cancel lands long before the end
    job_id = client.post("/jobs", json=tokenise_spec(n, batch_size=1, num_workers=0)).json()["id"]
    wait_until(
        lambda: client.get(f"/jobs/{job_id}").json()["progress"]["iteration"] >= SHARD,
        timeout=300,
        what="the first shard",
        interval=0.2,
    )
    client.post(f"/jobs/{job_id}/cancel")
    cancelled = wait_for_job(client, job_id, {"cancelled", "completed"}, timeout=120)
    assert cancelled["phase"] == "cancelled", "the job finished before its cancel landed"
    resumed = client.post(f"/jobs/{job_id}/resume", json={})
    assert resumed.status_code == 202, resumed.text
    wait_for_job(client, job_id, {"completed"}, timeout=300)
    _check_tokens_are_the_codecs(stack, tokens_dir(run_dir(stack, job_id)), n, [0, n - 1])
    assert client.post(f"/jobs/{job_id}/resume", json={}).status_code == 409  # nothing left to do


def test_a_train_job_reads_a_tokenise_jobs_data_set_by_its_id(stack: Stack) -> None:
    from astropt.codec import load_codec

    client = stack.client()
    source = client.post("/jobs", json=tokenise_spec(64)).json()["id"]
    wait_for_job(client, source, {"completed"}, timeout=300)
    train = {
        "codec": "shipped",
        "device": "cpu",
        "data": {"source": "tokens", "job_id": source, "val_fraction": 0.125},
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576},
        "batch_size": 4,
        "max_iters": 12,
        "eval_interval": 6,
        "eval_iters": 1,
        "log_interval": 2,
        "n_val_images": 0,
        "optim": {"learning_rate": 3e-3, "warmup_iters": 2},
    }
    created = client.post("/jobs", json=train)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["data"]["path"] == str(
        tokens_dir(run_dir(stack, source))
    )  # resolved
    job = wait_for_job(client, created.json()["id"], {"completed"}, timeout=300)
    assert (
        job["best_val_loss"] is not None and job["best_val_loss"] < 9.3
    )  # ln(10,000) = 9.21 untrained
    listed = {i["id"]: i for i in client.get("/datasets").json()["items"]}[f"tokens-{source}"]
    assert listed["last_used_at"] is not None

    other = client.post(
        "/jobs", json={**train, "codec": "random:0"}
    )  # tokens of one codec, a model of another
    assert other.status_code == 422, other.text
    issue = other.json()["detail"][0]
    assert issue["field"] == "codec" and load_codec("shipped").info.fingerprint in issue["msg"]
    assert load_codec("random:0").info.fingerprint in issue["msg"]
    missing = client.post("/jobs", json={**train, "data": {"source": "tokens", "job_id": "0" * 32}})
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "data.job_id"
    embed = {
        "kind": "embed",
        "device": "cpu",
        "data": {"source": "tokens", "job_id": source},
        "embed": {"model": "shipped"},
    }
    # An embed job reads the same tokens (no codec runs): every galaxy once, in the data set's
    # order, its columns riding along, and a cut-out decoded from the tokens, labelled so.
    embedded = client.post("/jobs", json=embed)
    assert embedded.status_code == 201, embedded.text
    catalogue_id = embedded.json()["id"]
    progress = wait_for_job(client, catalogue_id, {"completed"}, timeout=300)["progress"]
    assert progress["iteration"] == 64 == progress["max_iters"]
    download = client.get(f"/catalogues/{catalogue_id}/catalogue.parquet")
    table = pq.read_table(io.BytesIO(download.content))
    assert table.column("object_id").to_pylist() == mock_ids(64)
    assert "aperture_flux" not in table.column_names and "surprisal" in table.column_names
    described = client.get(f"/catalogues/{catalogue_id}").json()
    assert described["manifest"]["data_source"]["kind"] == "tokens"
    cutout = client.get(f"/catalogues/{catalogue_id}/objects/{mock_ids(64)[5]}/cutout.png")
    assert cutout.status_code == 200 and cutout.headers["content-type"] == "image/png"
    assert cutout.headers["X-Image-Origin"] == "codec-decoded"
    # No queued or running job reads it any more: it can be deleted (its job record stays).
    assert client.delete(f"/datasets/tokens-{source}").status_code == 204
    assert not tokens_dir(run_dir(stack, source)).exists()
