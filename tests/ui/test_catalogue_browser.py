"""The catalogue page's galleries and galaxy panel in headless Chromium against `astropt serve`
(issue #26): cut-outs of the most unusual galaxies, a click opens the galaxy with its
neighbours, a probe's worst-predicted, a search by upload; nothing is fetched from elsewhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from astropt.data.mock import simulate_galaxy
from astropt.science.anomaly import METHODS
from tests.service.stack import API_KEY, Stack, service_env, unique_queue, wait_for_job
from tests.ui.browser import NetworkLog, artifact_dir, chromium_page, require_chromium

TEMPLATE = Path(__file__).resolve().parents[2] / "service" / "ui" / "templates" / "catalogue.html"
LOADED = "[...document.querySelectorAll('{0} img')].filter(i => i.naturalWidth > 0).length >= {1}"


def test_the_pages_anomaly_methods_are_the_libraries() -> None:
    select = re.search(r'<select id="gallery-method">(.*?)</select>', TEMPLATE.read_text(), re.S)
    assert select is not None
    assert re.findall(r'<option value="([a-z_]+)">', select.group(1)) == list(METHODS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_chromium()
    root = tmp_path_factory.mktemp("catalogue-ui")
    (root / "logs").mkdir()
    env = service_env(root / "data", None, None, unique_queue(), ASTROPT_WORKER_LEASE_SECONDS="120")
    running = Stack(env, root / "logs")
    try:
        running.start_api(command="serve")
        yield running
    finally:
        running.stop()
        print(running.logs())


@pytest.mark.slow
def test_galleries_open_a_galaxy_with_its_neighbours(
    stack: Stack, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    client = stack.client()
    spec = {
        "kind": "embed",
        "device": "cpu",
        "data": {"source": "mock", "n_mock": 40, "mock_seed": 778},
        "embed": {"model": "shipped", "batch_size": 20},
    }
    job_id = client.post("/jobs", json=spec).json()["id"]
    wait_for_job(client, job_id, {"completed"}, timeout=240)
    upload = tmp_path / "g.npy"
    np.save(upload, simulate_galaxy(778, 5)["flux"])
    network = NetworkLog()
    shots = artifact_dir(request.node.name)
    with chromium_page(network) as page:
        page.goto(f"{stack.base_url}/ui/catalogues/{job_id}")
        page.fill("#api-key", API_KEY)
        page.locator("#key-form button").click()
        page.wait_for_function(LOADED.format("#gallery", 24))  # the 24 most unusual, as cut-outs
        shown = [t.get_attribute("data-object-id") for t in page.locator("#gallery .tile").all()]
        api = client.get(f"/catalogues/{job_id}/gallery", params={"n": 24}).json()
        assert shown == [item["object_id"] for item in api["items"]]
        page.screenshot(path=shots / "gallery.png", full_page=True)

        page.locator("#gallery .tile").nth(2).click()  # the galaxy's panel, with its neighbours
        page.wait_for_function("!document.querySelector('#galaxy').hidden")
        page.wait_for_function("document.querySelector('#galaxy-cutout').naturalWidth > 0")
        page.wait_for_function(LOADED.format("#galaxy-neighbours", 8))
        assert page.locator("#galaxy-id").inner_text() == shown[2]
        assert "surprisal_excess (default)" in page.locator("#galaxy-anomaly").inner_text()
        neighbour = page.locator("#galaxy-neighbours .tile").first.get_attribute("data-object-id")
        page.screenshot(path=shots / "galaxy.png", full_page=True)
        page.locator("#galaxy-neighbours .tile").first.click()  # a neighbour's own page
        page.wait_for_function(
            f"document.querySelector('#galaxy-id').textContent === {neighbour!r}"
        )

        # the thumbnail map: hover names a galaxy, a click opens it
        page.wait_for_function("document.querySelector('#thumbmap').dataset.ready === '1'")
        page.locator("#thumbmap").scroll_into_view_if_needed()
        page.screenshot(path=shots / "thumbmap.png")
        box = page.locator("#thumbmap").bounding_box()
        layout = client.get(
            f"/catalogues/{job_id}/thumbnails", params={"grid": 16, "tile": 48}
        ).json()
        e, p = layout["extent"], layout["points"]
        x = box["x"] + (p["x"][0] - e["xmin"]) / (e["xmax"] - e["xmin"]) * box["width"]
        y = box["y"] + (1 - (p["y"][0] - e["ymin"]) / (e["ymax"] - e["ymin"])) * box["height"]
        page.mouse.move(x, y)
        hovered = page.locator("#thumbmap").get_attribute("data-hover")
        assert hovered in p["object_id"]
        page.mouse.click(x, y)
        page.wait_for_function(f"document.querySelector('#galaxy-id').textContent === {hovered!r}")

        page.select_option("#gallery-kind", "worst")
        page.wait_for_function(
            "document.querySelector('#gallery-state').textContent.startsWith('worst-predicted')"
        )
        page.wait_for_function(LOADED.format("#gallery", 24))

        page.set_input_files(
            "#search-file", str(upload)
        )  # search by upload: the galaxy itself first
        page.locator("#search-form button").click()
        page.wait_for_function(LOADED.format("#search-tiles", 8))
        first = page.locator("#search-tiles .tile").first.get_attribute("data-object-id")
        assert first == f"mock-s778-{5:08d}"
    assert network.outside(stack.base_url) == []
