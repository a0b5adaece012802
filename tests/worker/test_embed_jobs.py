"""Embed jobs end to end: uvicorn API + a real Celery worker + Redis + SQLite, the shipped model.

One ``kind: embed`` job over 128 mock galaxies is cancelled mid-run and resumed: it continues
after its last complete shard, and its catalogue has every galaxy once, with the embeddings
``POST /embed`` gives for the same images. Then the catalogue endpoints: manifest, Parquet
download, search by id and by image, probes with their controls, outliers, the map; and the
refusals (4xx with the reason)."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from astropt.checkpoints import read_meta
from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR
from astropt.data import simulate_galaxy
from tests.service.stack import (
    Stack,
    redis_url,
    run_dir,
    running_stack,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow
N, SEED, SHARD = 128, 5, 16


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("embed-stack")
    env = service_env(
        tmp / "data",
        f"sqlite:///{tmp / 'jobs.db'}",
        redis_url(),
        unique_queue(),
        ASTROPT_EMBED_SHARD_ROWS=str(SHARD),
        ASTROPT_MAX_EMBED_OBJECTS="1000",
        ASTROPT_MAX_SEARCH_K="20",
        ASTROPT_INFERENCE_PRECISION="float32",
    )  # /embed in float32, as the job computes
    with running_stack(env, tmp / "logs") as stack:
        yield stack


def embed_spec(**section) -> dict:
    body = {
        "model": "shipped",
        "batch_size": 4,
        **section,
    }  # the default pooling: centre 4 of the last block
    return {
        "kind": "embed",
        "device": "cpu",
        "data": {"source": "mock", "n_mock": N, "mock_seed": SEED},
        "embed": body,
    }


def npy(index: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, simulate_galaxy(seed=SEED, index=index)["flux"])
    return buffer.getvalue()


def issue(response) -> str:
    assert 400 <= response.status_code < 500, response.text
    return response.text


def test_embed_job_cancelled_resumed_and_its_catalogue_served(stack: Stack) -> None:
    client = stack.client()
    # Refusals at submission: the key, the model's layers, the bounds, an unknown model job.
    assert stack.client(with_key=False).post("/jobs", json=embed_spec()).status_code == 401
    blocks = read_meta(SHIPPED_MODEL_DIR)["model_args"]["n_layer"]
    bad = client.post("/jobs", json=embed_spec(layer=blocks))
    assert (
        bad.status_code == 422
        and bad.json()["detail"][0]["field"] == "embed.layer"
        and f"{blocks} blocks" in bad.text
    )
    big = client.post("/jobs", json={**embed_spec(), "data": {"source": "mock", "n_mock": 5000}})
    assert big.status_code == 422 and "ASTROPT_MAX_EMBED_OBJECTS" in big.text
    missing = client.post("/jobs", json=embed_spec(model={"job": "0123abcd"}))
    assert missing.status_code == 422 and "not found" in missing.text

    submitted = client.post("/jobs", json=embed_spec())
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.json()["kind"] == "embed" and submitted.json()["progress"]["max_iters"] == N

    def progressed() -> bool:
        body = client.get(f"/jobs/{job_id}").json()
        assert body["phase"] in ("queued", "running"), body
        return body["progress"]["iteration"] >= 2 * SHARD

    wait_until(progressed, timeout=240, what="the embed job to pass two shards", interval=0.25)
    # The worker is busy: a training job waits queued, and is cancelled before it runs.
    train_id = client.post("/jobs", json=tiny_spec(max_iters=2)).json()["id"]
    assert client.post(f"/jobs/{train_id}/cancel").json()["phase"] == "cancelled"
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    cancelled = wait_for_job(client, job_id, {"cancelled", "completed"}, timeout=120)
    assert cancelled["phase"] == "cancelled", "the job finished before the cancel reached it"
    stopped_at = cancelled["progress"]["iteration"]
    assert 2 * SHARD <= stopped_at < N
    out = run_dir(stack, job_id)
    shards = sorted(p.name for p in (out / ".catalogue.work").glob("shard_*.parquet"))
    assert len(shards) >= 2 and not (out / "catalogue").exists()
    assert "cancelled" in client.get(f"/catalogues/{job_id}").text  # 409: not finished
    assert client.get(f"/catalogues/{job_id}").status_code == 409

    assert client.post(f"/jobs/{job_id}/resume").status_code == 202
    job = wait_for_job(client, job_id, {"completed"}, timeout=240)
    resumed_from = job["resources"]["resumed_from"]
    assert (
        job["attempts"] == 2
        and resumed_from % SHARD == 0
        and len(shards) * SHARD <= resumed_from <= stopped_at
    )
    assert (
        job["progress"]["iteration"] == N == job["progress"]["max_iters"]
        and job["codec"]["spec"] == "shipped"
    )
    assert not (out / ".catalogue.work").exists()
    assert (
        client.post(f"/jobs/{job_id}/resume").status_code == 409
    )  # a completed catalogue is not redone

    # The catalogue: every galaxy once, in order, and the rows of /embed on the same images
    # (both at their defaults: one default pooling, whichever way a galaxy is embedded).
    listed = client.get("/catalogues").json()
    assert listed["total"] == 1 and listed["items"][0]["job_id"] == job_id
    described = client.get(f"/catalogues/{job_id}").json()
    assert described["count"] == N and described["manifest"]["resumed_from"] == resumed_from
    manifest = described["manifest"]
    assert (manifest["pooling"], manifest["centre"], manifest["layer"]) == ("centre", 4, -1)
    assert described["embedding_dim"] == read_meta(SHIPPED_MODEL_DIR)["model_args"]["n_embd"]
    download = client.get(f"/catalogues/{job_id}/catalogue.parquet")
    assert download.status_code == 200
    table = pq.read_table(io.BytesIO(download.content))
    ids = table.column("object_id").to_pylist()
    assert ids == [f"mock-s{SEED}-{i:08d}" for i in range(N)]  # none lost, none twice
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    for row in (0, resumed_from - 1, resumed_from, N - 1):  # each side of the resume
        answer = client.post("/embed", files={"file": ("g.npy", npy(row))})
        assert answer.status_code == 200 and answer.json()["job_id"] == "shipped"
        assert (answer.json()["pooling"], answer.json()["centre"]) == ("centre", 4)
        np.testing.assert_allclose(
            vectors[row], answer.json()["embedding"]["centre"], rtol=1e-4, atol=1e-5
        )

    # Search: by id and by the object's own image, the object first.
    target = ids[37]
    hits = client.post("/search", json={"job_id": job_id, "object_id": target, "k": 5}).json()
    assert [h["rank"] for h in hits["neighbours"]] == [0, 1, 2, 3, 4]
    assert hits["neighbours"][0]["object_id"] == target and hits["neighbours"][0][
        "score"
    ] == pytest.approx(1, abs=1e-5)
    assert "mag_r" in hits["neighbours"][0]["columns"]
    scores = [h["score"] for h in hits["neighbours"]]
    assert scores == sorted(scores, reverse=True)
    by_image = client.post(
        "/search", files={"file": ("g.npy", npy(37))}, data={"job_id": job_id, "k": "3"}
    )
    assert by_image.status_code == 200, by_image.text
    assert by_image.json()["neighbours"][0]["object_id"] == target
    assert by_image.json()["neighbours"][0]["score"] == pytest.approx(1, abs=1e-4)
    for mosaic in (
        client.post("/search?format=png", json={"job_id": job_id, "object_id": target, "k": 4}),
        client.post(
            "/search?format=png", files={"file": ("g.npy", npy(37))}, data={"job_id": job_id}
        ),
        client.get(f"/catalogues/{job_id}/outliers", params={"n": 3, "format": "png"}),
    ):
        assert mosaic.status_code == 200 and mosaic.content.startswith(b"\x89PNG"), mosaic.text

    # Probes: R^2 per label beside the controls, as JSON and as a figure.
    probe = client.post(
        f"/catalogues/{job_id}/probe",
        json={"labels": ["mag_r", "g_r"], "folds": 3, "bootstrap": 50},
    )
    assert probe.status_code == 200, probe.text
    features = {f["name"]: f["scores"] for f in probe.json()["features"]}
    assert set(features) == {"embedding", "aperture_flux", "shuffled_labels"}
    assert features["embedding"]["mag_r"]["r2_mean"] > 0.5
    assert abs(features["shuffled_labels"]["mag_r"]["r2_mean"]) < 0.3
    low, high = features["embedding"]["mag_r"]["ci_low"], features["embedding"]["mag_r"]["ci_high"]
    assert low < features["embedding"]["mag_r"]["r2_mean"] < high
    figure = client.post(
        f"/catalogues/{job_id}/probe?format=png", json={"labels": ["mag_r"], "folds": 3}
    )
    assert figure.status_code == 200 and figure.content.startswith(b"\x89PNG")
    outliers = client.get(f"/catalogues/{job_id}/outliers", params={"n": 5}).json()["items"]
    assert len(outliers) == 5 and outliers[0]["outlier_score"] >= outliers[-1]["outlier_score"] > 0
    picture = client.get(f"/catalogues/{job_id}/map.png", params={"color": "mag_r"})
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    umap = client.get(f"/catalogues/{job_id}/map.png", params={"color": "mag_r", "method": "umap"})
    if (
        importlib.util.find_spec("umap") is None
    ):  # the optional extra: a 422 that says how to get it
        assert umap.status_code == 422 and "umap-learn" in umap.text and "pca" in umap.text
    else:
        assert umap.status_code == 200 and umap.content.startswith(b"\x89PNG")
    assert client.get(f"/catalogues/{job_id}/map.png", params={"method": "tsne"}).status_code == 422

    # Refusals: 4xx with the reason.
    no_key = stack.client(with_key=False)
    assert no_key.post(f"/catalogues/{job_id}/probe", json={"labels": ["mag_r"]}).status_code == 401
    assert no_key.post("/search", json={"job_id": job_id, "object_id": target}).status_code == 401
    assert "not found" in issue(client.get("/catalogues/0123abcd"))
    assert "train job" in issue(client.get(f"/catalogues/{train_id}"))
    unknown = client.post(f"/catalogues/{job_id}/probe", json={"labels": ["mag_r", "redshift"]})
    assert unknown.status_code == 422 and "redshift" in unknown.text and "g_r" in unknown.text
    too_many = client.post("/search", json={"job_id": job_id, "object_id": target, "k": 21})
    assert too_many.status_code == 422 and "ASTROPT_MAX_SEARCH_K" in too_many.text
    assert "not in the catalogue" in issue(
        client.post("/search", json={"job_id": job_id, "object_id": "x"})
    )
    assert issue(client.post("/search", json={"job_id": train_id, "object_id": target})).count(
        "train job"
    )
    folds = client.post(f"/catalogues/{job_id}/probe", json={"labels": ["mag_r"], "folds": 21})
    assert folds.status_code == 422 and "ASTROPT_MAX_PROBE_FOLDS" in folds.text
    colour = client.get(f"/catalogues/{job_id}/map.png", params={"color": "object_id"})
    assert colour.status_code == 422 and "mag_r" in colour.text

    # Deleting the job deletes its catalogue.
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert not Path(out).exists() and client.get(f"/catalogues/{job_id}").status_code == 404


def test_an_embed_job_whose_worker_is_killed_continues_from_its_shards(
    stack: Stack, tmp_path: Path
) -> None:
    """kill -9 of the worker mid-run: the job is queued again when its heartbeat stops and the
    next worker continues after the last complete shard, with the rows of an uninterrupted run."""
    from astropt.science import EmbedOptions, SourceSpec, embed_catalogue, load_embed_model
    from astropt.science.shards import work_dir_for

    client = stack.client()
    job_id = client.post("/jobs", json=embed_spec(pool="mean")).json()["id"]
    # complete shards on disk, not the progress count: it counts galaxies as they are embedded,
    # ahead of the write of their shard
    work = work_dir_for(run_dir(stack, job_id) / "catalogue")
    wait_until(
        lambda: len(list(work.glob("shard_*.parquet"))) >= 2,
        timeout=240,
        what="the embed job to write two shards",
        interval=0.25,
    )
    stack.kill_worker(stack.workers[-1])
    stack.start_worker()
    job = wait_for_job(client, job_id, {"completed"}, timeout=300)
    assert job["attempts"] == 2 and len(job["interruptions"]) == 1
    assert 2 * SHARD <= job["resources"]["resumed_from"] < N
    served = pq.read_table(run_dir(stack, job_id) / "catalogue" / "catalogue.parquet")
    assert served.column("object_id").to_pylist() == [f"mock-s{SEED}-{i:08d}" for i in range(N)]

    mock = (
        Path(stack.env["ASTROPT_DATA_DIR"]) / "mock" / f"n{N}_seed{SEED}"
    )  # the job's (cached) mock
    reference = embed_catalogue(
        load_embed_model(SHIPPED_MODEL_DIR),
        SourceSpec("mock", n=N, seed=SEED, path=str(mock)),
        tmp_path / "cat",
        EmbedOptions(pool="mean", batch_size=4),
        shard_rows=SHARD,
    )
    expected = pq.read_table(Path(reference.out_dir) / "catalogue.parquet")
    assert served.drop_columns(["embedding"]).equals(expected.drop_columns(["embedding"]))
    np.testing.assert_allclose(
        np.array(served.column("embedding").to_pylist()),
        np.array(expected.column("embedding").to_pylist()),
        rtol=1e-5,
        atol=1e-6,
    )


def test_an_embed_job_of_an_unreachable_hub_data_set_fails_with_the_reason(stack: Stack) -> None:
    """The hf source is accepted and streamed by the worker; offline (as here) the job fails at
    once with an error naming the data set and what to do, never a hang."""
    client = stack.client()
    body = {
        **embed_spec(limit=10),
        "data": {"source": "hf", "hf_dataset": "someone/not-here", "streaming": True},
    }
    submitted = client.post("/jobs", json=body)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["progress"]["max_iters"] == 10  # at most the limit
    job = wait_for_job(client, submitted.json()["id"], {"failed", "completed"}, timeout=120)
    assert job["phase"] == "failed" and "someone/not-here" in job["failure_reason"], job
    assert not (run_dir(stack, job["id"]) / "catalogue").exists()
