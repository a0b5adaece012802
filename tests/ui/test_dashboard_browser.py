"""The dashboard in headless Chromium against `astropt serve` (API + a real worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropt.data.mock import simulate
from tests.service.stack import (
    API_KEY,
    Stack,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_job,
)
from tests.ui.browser import NetworkLog, artifact_dir, chromium_page, require_chromium

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_chromium()
    root = tmp_path_factory.mktemp("dashboard")
    (root / "logs").mkdir()
    # A long lease: on a busy machine a job's first heartbeat can take longer than the
    # short lease the recovery tests use, and this test is about the pages, not recovery.
    env = service_env(root / "data", None, None, unique_queue(), ASTROPT_WORKER_LEASE_SECONDS="120")
    running = Stack(env, root / "logs")
    try:
        running.start_api(command="serve")
        yield running
    finally:
        running.stop()
        print(running.logs())


def points(page, series: str) -> int:
    return int(page.locator("#loss-chart").get_attribute(f"data-points_{series}") or 0)


def test_dashboard_follows_a_running_job(stack: Stack, request: pytest.FixtureRequest) -> None:
    client = stack.client()
    # With a live probe: its R^2 curves get their own chart beside the losses.
    spec = tiny_spec(
        max_iters=2000,
        eval_interval=5,
        n_val_images=2,
        data={"source": "mock", "n_mock": 48, "val_fraction": 0.25},
        live_probe={"labels": ["mag_r", "g_r"], "n_galaxies": 12, "folds": 3},
    )
    job_id = client.post("/jobs", json=spec).json()["id"]
    shots = artifact_dir(request.node.name)
    network = NetworkLog()
    with chromium_page(network) as page:
        page.goto(f"{stack.base_url}/ui/jobs")
        row = page.locator(f"tr[data-job-id='{job_id}']")
        row.wait_for()
        page.screenshot(path=shots / "jobs.png")
        row.get_by_role("link").click()
        page.wait_for_url(f"**/ui/jobs/{job_id}")

        # The curve grows while the job runs (points arrive over SSE, not by reloading).
        page.wait_for_function(
            "Number(document.querySelector('#loss-chart').dataset.points_train_loss || 0) >= 2"
        )
        seen = points(page, "train_loss")
        page.wait_for_function(
            f"Number(document.querySelector('#loss-chart').dataset.points_train_loss) >= {seen + 5}"
        )
        assert page.locator("#phase").inner_text() == "running"
        assert page.locator("#loss-chart polyline[data-series='train_loss']").count() == 1
        assert page.locator("#lr-chart polyline[data-series='lr']").count() == 1

        # Validation images appear as the worker writes them, and they are real PNGs.
        image = page.locator("#val-images figure img").first
        image.wait_for()
        page.wait_for_function(
            "[...document.querySelectorAll('#val-images img')].some(i => i.naturalWidth > 0)"
        )
        assert (
            page.locator("#val-images figure")
            .first.get_attribute("data-path")
            .startswith("val_images/step_")
        )
        page.wait_for_function(
            "Number(document.querySelector('#loss-chart').dataset.points_val_loss || 0) >= 1"
        )
        page.wait_for_function(
            "Number(document.querySelector('#probe-chart').dataset.points_mag_r || 0) >= 2"
        )
        assert page.locator("#probe-figure").is_visible()
        assert page.locator("#probe-chart polyline[data-series='g_r']").count() == 1
        page.screenshot(path=shots / "job-running.png", full_page=True)

        # Cancel is API-key aware: refused without the key, accepted with it.
        page.locator("#cancel").click()
        page.wait_for_function(
            "document.querySelector('#action-state').textContent.includes('401')"
        )
        assert client.get(f"/jobs/{job_id}").json()["phase"] == "running"
        page.fill("#api-key", API_KEY)
        page.locator("#key-form button").click()
        page.locator("#cancel").click()
        page.wait_for_function("document.querySelector('#phase').textContent === 'cancelled'")
        assert page.locator("#resume").is_enabled()
        page.wait_for_function("document.querySelectorAll('#checkpoints a').length >= 1")
        page.screenshot(path=shots / "job-cancelled.png", full_page=True)
    assert wait_for_job(client, job_id, {"cancelled"})["phase"] == "cancelled"
    assert network.outside(stack.base_url) == []


def write_mock_fits(path: Path) -> Path:
    galaxy = next(simulate(1, seed=12345))
    fits.PrimaryHDU(np.asarray(galaxy["flux"], dtype=np.float32)).writeto(path)
    return path


def test_reconstruct_page_uploads_a_fits_file(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=tiny_spec(max_iters=6, eval_interval=3)).json()["id"]
    wait_for_job(client, job_id, {"completed"})
    upload = write_mock_fits(tmp_path / "galaxy.fits")
    network = NetworkLog()
    with chromium_page(network) as page:
        page.goto(f"{stack.base_url}/ui/reconstruct?job_id={job_id}")
        assert page.locator("#job").input_value() == job_id
        page.fill("#api-key", API_KEY)  # inference is compute-heavy: it needs the key too
        page.locator("#key-form button").click()
        page.set_input_files("#file", str(upload))
        page.select_option("#mode", "predict")
        page.locator("#run").click()
        page.wait_for_function(
            "document.querySelector('#panel').naturalWidth > 0"
            " || !document.querySelector('#reconstruct-error').hidden"
        )
        error = page.locator("#reconstruct-error")
        assert error.is_hidden(), f"the page shows an error: {error.inner_text()}"
        width = page.evaluate("document.querySelector('#panel').naturalWidth")
        assert width > 3 * 96  # original, codec, model and residual side by side
        assert page.locator("[data-metric='X-Job-Id']").inner_text() == job_id
        accuracy = float(page.locator("[data-metric='X-Token-Accuracy']").inner_text())
        assert 0.0 <= accuracy <= 1.0
        page.screenshot(path=artifact_dir(request.node.name) / "reconstruct.png", full_page=True)
    assert network.outside(stack.base_url) == []


def test_catalogue_page_shows_the_map_outliers_and_a_search(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    client = stack.client()
    spec = {
        "kind": "embed",
        "device": "cpu",
        "data": {"source": "mock", "n_mock": 40, "mock_seed": 777},
        "embed": {"model": "shipped", "pool": "mean", "batch_size": 20},
    }
    job_id = client.post("/jobs", json=spec).json()["id"]
    wait_for_job(client, job_id, {"completed"})
    network = NetworkLog()
    with chromium_page(network) as page:
        page.goto(f"{stack.base_url}/ui/catalogues")
        row = page.locator(f"tr[data-job-id='{job_id}']")
        assert row.locator("td").nth(1).inner_text() == "40"
        row.get_by_role("link").first.click()
        page.wait_for_url(f"**/ui/catalogues/{job_id}")
        # without the key the map is refused, and the page says why
        page.wait_for_function("document.querySelector('#map-state').textContent.includes('401')")
        page.fill("#api-key", API_KEY)
        page.locator("#key-form button").click()
        page.wait_for_function("document.querySelector('#map').naturalWidth > 0")
        page.wait_for_function("document.querySelectorAll('#outliers tbody tr').length === 8")
        page.wait_for_function("document.querySelector('#outliers-mosaic').naturalWidth > 0")
        top = page.locator("#outliers tbody tr").first.get_attribute("data-object-id")
        expected = client.get(f"/catalogues/{job_id}/outliers", params={"n": 1}).json()["items"][0][
            "object_id"
        ]
        assert top == expected
        page.select_option("#map-color", "mag_r")
        # search: the object itself comes first, then its neighbours, as the API says
        page.fill("#search-id", top)
        page.locator("#search-form button").click()
        page.wait_for_function("document.querySelectorAll('#neighbours tbody tr').length === 8")
        page.wait_for_function("document.querySelector('#search-mosaic').naturalWidth > 0")
        shown = [
            r.get_attribute("data-object-id") for r in page.locator("#neighbours tbody tr").all()
        ]
        api = client.post("/search", json={"job_id": job_id, "object_id": top, "k": 8}).json()
        assert shown == [n["object_id"] for n in api["neighbours"]] and shown[0] == top
        page.screenshot(path=artifact_dir(request.node.name) / "catalogue.png", full_page=True)
    assert network.outside(stack.base_url) == []
