"""astropt.client.Client and the `astropt jobs` / `astropt reconstruct` CLI against `astropt serve`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from astropy.io import fits
from PIL import Image

from astropt.client import Client, ClientError
from astropt.data.mock import simulate
from astropt.inference.render import png_size
from tests.service.stack import API_KEY, REPO, Stack, service_env, tiny_spec, unique_queue

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("client")
    (root / "logs").mkdir()
    env = service_env(root / "data", None, None, unique_queue(), ASTROPT_WORKER_LEASE_SECONDS="120")
    running = Stack(env, root / "logs")
    try:
        running.start_api(command="serve")
        yield running
    finally:
        running.stop()
        print(running.logs())


def galaxy_cube() -> np.ndarray:
    return np.asarray(next(simulate(1, seed=9876))["flux"], dtype=np.float32)


def test_client_submits_waits_and_reads_curves_and_reconstructions(stack: Stack) -> None:
    with Client(stack.base_url, API_KEY) as client:
        first = client.submit(tiny_spec(max_iters=8, eval_interval=4))
        second = client.submit(tiny_spec(max_iters=6, eval_interval=3, seed=7))
        assert first["phase"] == "queued"
        done = client.wait(first["id"], timeout=600)
        assert done["phase"] == "completed"
        assert client.wait(second["id"], timeout=600)["phase"] == "completed"

        curves = client.curves(first["id"])
        assert list(curves.columns) == ["step", "train_loss", "val_loss", "lr"]
        assert curves["train_loss"].notna().sum() == 8
        assert curves["step"].is_monotonic_increasing and curves["step"].max() == 8
        assert set(curves.dropna(subset=["val_loss"])["step"]) >= {4, 8}
        assert curves["val_loss"].min() == pytest.approx(done["best_val_loss"])

        cube = client.reconstruct(galaxy_cube(), job_id=first["id"])
        assert cube.shape == (4, 96, 96) and cube.dtype == np.float32 and np.isfinite(cube).all()
        png, metrics = client.reconstruct_png(galaxy_cube(), job_id=first["id"], mode="codec")
        assert Image.open(io.BytesIO(png)).size == png_size(3)
        assert metrics["x-job-id"] == first["id"] and metrics["x-mode"] == "codec"

        compare = Image.open(io.BytesIO(client.compare_png([first["id"], second["id"]])))
        assert compare.format == "PNG" and compare.size == (800, 450)
        assert [job["id"] for job in client.list()][:2] == [second["id"], first["id"]]

        with pytest.raises(ClientError) as missing:
            client.compare_png([first["id"], "no-such-job"])
        assert missing.value.status == 404 and "no-such-job" in missing.value.detail
    with Client(stack.base_url, api_key="") as anonymous, pytest.raises(ClientError) as refused:
        anonymous.submit(tiny_spec())
    assert refused.value.status == 401
    with (
        Client("http://127.0.0.1:9", api_key="") as nowhere,
        pytest.raises(ClientError, match="cannot reach"),
    ):
        nowhere.list()


def test_compare_png_validates_its_ids(stack: Stack) -> None:
    assert httpx.get(f"{stack.base_url}/jobs/compare.png", params={"ids": " , "}).status_code == 422
    too_many = ",".join(f"id{i}" for i in range(13))
    response = httpx.get(f"{stack.base_url}/jobs/compare.png", params={"ids": too_many})
    assert response.status_code == 422 and "at most 12" in response.json()["detail"]
    assert httpx.get(f"{stack.base_url}/jobs/compare.png").status_code == 422


def cli(stack: Stack, *args: str, key: str = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASTROPT_URL": stack.base_url, "ASTROPT_API_KEY": key, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "astropt.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_manages_jobs_and_reconstructs(stack: Stack, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_spec(max_iters=6, eval_interval=3)))
    submitted = cli(stack, "jobs", "submit", str(config), "--follow")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split()[1]
    assert f"{job_id}: completed" in submitted.stdout

    listing = cli(stack, "jobs", "list")
    assert listing.returncode == 0 and job_id in listing.stdout and "completed" in listing.stdout
    shown = cli(stack, "jobs", "show", job_id)
    assert (
        shown.returncode == 0
        and "best val loss" in shown.stdout
        and "checkpoint best" in shown.stdout
    )
    assert cli(stack, "jobs", "watch", job_id).returncode == 0  # finished: prints and returns

    image = tmp_path / "galaxy.fits"
    fits.PrimaryHDU(galaxy_cube()).writeto(image)
    out = tmp_path / "panel.png"
    made = cli(stack, "reconstruct", str(image), "-o", str(out), "--job", job_id)
    assert made.returncode == 0, made.stderr
    assert Image.open(out).size == png_size(4) and job_id in made.stdout
    cube_out = tmp_path / "cube.fits"
    assert (
        cli(stack, "reconstruct", str(image), "-o", str(cube_out), "--job", job_id).returncode == 0
    )
    assert fits.getdata(cube_out).shape == (4, 96, 96)

    refused = cli(stack, "jobs", "delete", job_id, key="")
    assert refused.returncode == 1 and "401" in refused.stderr
    assert cli(stack, "jobs", "delete", job_id).returncode == 0
    gone = cli(stack, "jobs", "show", job_id)
    assert gone.returncode == 1 and "404" in gone.stderr
    missing = cli(stack, "jobs", "submit", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "no such config file" in missing.stderr
