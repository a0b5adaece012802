"""``astropt serve --demo`` end to end: the demo job learns, its model then answers /reconstruct,
and its job page in Chromium shows the fall (a screenshot under test-artifacts/)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service.jobs.schemas import DEMO_JOB
from tests.service.stack import Stack, service_env, unique_queue, wait_for_job
from tests.ui.browser import NetworkLog, artifact_dir, chromium_page

pytestmark = pytest.mark.slow


class Demo:
    def __init__(self, stack: Stack, job: dict[str, Any], output: str):
        self.stack, self.job, self.output = stack, job, output


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("demo")
    (root / "logs").mkdir()
    # No API key: a newcomer's `astropt serve --demo` has none. A long lease: the demo is
    # CPU-bound on a machine the other tests share.
    env = service_env(root / "data", None, None, unique_queue(), ASTROPT_WORKER_LEASE_SECONDS="120")
    del env["ASTROPT_API_KEY"]
    stack = Stack(env, root / "logs")
    try:
        stack.start_api("--demo", command="serve")
        client = stack.client(with_key=False)
        (listed,) = client.get("/jobs").json()["items"]
        # generous: the figure the docs quote is measured by benchmarks/bench_demo.py, not here
        job = wait_for_job(client, listed["id"], {"completed"}, timeout=1800)
        yield Demo(stack, job, (root / "logs" / "serve.log").read_text(errors="replace"))
    finally:
        stack.stop()
        print(stack.logs())


def test_the_demo_job_is_the_spec_and_its_validation_loss_falls(demo: Demo) -> None:
    spec = demo.job["spec"]
    assert spec["model"] == {**spec["model"], **DEMO_JOB["model"]}
    assert spec["max_iters"] == DEMO_JOB["max_iters"] and spec["init_from"] is None
    val = demo.job["curves"]["val_loss"]
    assert val["steps"][0] == 0 and val["steps"][-1] == DEMO_JOB["max_iters"]
    first, last = val["values"][0], val["values"][-1]
    # random weights start at ln(vocabulary); the trained model ends well below half of it
    assert abs(first - math.log(10_000)) < 0.5, val
    assert last < 0.35 * first, val
    assert min(val["values"][1:]) < first
    best = next(c for c in demo.job["checkpoints"] if c["name"] == "best")
    assert best["step"] > 0 and demo.job["best_val_loss"] == pytest.approx(
        min(val["values"]), rel=1e-4
    )
    client = demo.stack.client(with_key=False)
    images = [
        f["path"]
        for f in client.get(f"/jobs/{demo.job['id']}/artifacts").json()["files"]
        if f["kind"] == "val_image"
    ]
    assert len(images) == len(val["steps"])  # a picture at every evaluation
    # ... and the model's column (right) comes much closer to the codec's (left) from the first to the last
    first_gap, last_gap = (
        panel_gap(client.get(f"/jobs/{demo.job['id']}/artifacts/{path}").content)
        for path in (images[0], images[-1])
    )
    assert last_gap < 0.5 * first_gap, (first_gap, last_gap)


def panel_gap(png: bytes) -> float:
    """Mean absolute pixel difference between the left (codec) and right (model) halves."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    half = pixels.shape[1] // 2
    return float(np.abs(pixels[:, :half] - pixels[:, -half:]).mean())


def test_the_start_up_output_leads_with_the_links_and_the_plan(demo: Demo) -> None:
    head = demo.output.lstrip().splitlines()[:14]
    assert head[0].startswith("AstroPT service"), demo.output[:2000]
    text = "\n".join(head)
    assert f"{demo.stack.base_url}/ui" in text and f"{demo.stack.base_url}/docs" in text
    assert f"Demo job {demo.job['id']}" in text and f"for {DEMO_JOB['max_iters']} steps" in text
    assert "Expected time" in text
    # Celery's banners are gone (its superuser one, its ASCII art); serve says it in one line
    assert "superuser privileges" not in demo.output and "-------------- celery@" not in demo.output


def test_reconstruct_answers_with_the_demo_model(demo: Demo) -> None:
    client = demo.stack.client(with_key=False)
    galaxy = client.get("/ui/sample-galaxy.fits")
    assert galaxy.status_code == 200 and galaxy.content.startswith(b"SIMPLE")
    for form in ({}, {"job_id": demo.job["id"]}):  # the latest completed job, or named
        response = client.post(
            "/reconstruct",
            data={**form, "format": "json"},
            files={"file": ("galaxy.fits", galaxy.content)},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["job_id"] == demo.job["id"] and body["checkpoint"] == "best"


def test_the_job_page_at_the_end_of_the_demo(demo: Demo, request: pytest.FixtureRequest) -> None:
    base, job_id = demo.stack.base_url, demo.job["id"]
    network = NetworkLog()
    shots = artifact_dir(request.node.name)
    with chromium_page(network, width=1280, height=900) as page:
        page.goto(f"{base}/ui/jobs/{job_id}")
        assert page.locator("#phase").inner_text() == "completed"
        page.wait_for_function(
            "Number(document.querySelector('#loss-chart').dataset.points_val_loss || 0)"
            f" === {len(demo.job['curves']['val_loss']['steps'])}"
        )
        page.wait_for_function(
            "[...document.querySelectorAll('#val-images img')].every(i => i.naturalWidth > 0)"
        )
        note = page.locator("#val-images-note").inner_text()
        assert "codec" in note and "model" in note and "Original" not in note
        captions = page.locator("#val-images figcaption").all_inner_texts()
        assert captions[0].startswith("step 0 · val loss") and captions[-1].startswith(
            f"step {DEMO_JOB['max_iters']}"
        )
        best = next(c for c in demo.job["checkpoints"] if c["name"] == "best")
        assert f"best (step {best['step']})" in page.locator("#checkpoints").inner_text()
        link = page.locator("#ready a#reconstruct-link")
        assert (
            link.is_visible() and link.get_attribute("href") == f"/ui/reconstruct?job_id={job_id}"
        )
        page.screenshot(path=shots / "demo-job-full.png", full_page=True)
        # what docs/img/demo-job.png shows: the page down to the last validation picture
        bottom = page.evaluate(
            "document.querySelector('#val-images').getBoundingClientRect().bottom + window.scrollY"
        )
        page.screenshot(
            path=shots / "demo-job.png",
            full_page=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": int(bottom) + 24},
        )

        link.click()  # the link leads to a page that reconstructs with this model in one click
        page.wait_for_url(f"**/ui/reconstruct?job_id={job_id}")
        assert page.locator("#job").input_value() == job_id
        page.locator("#sample").click()
        page.wait_for_function(
            "document.querySelector('#panel').naturalWidth > 0"
            " || !document.querySelector('#reconstruct-error').hidden"
        )
        assert page.locator("#reconstruct-error").is_hidden(), page.locator(
            "#reconstruct-error"
        ).inner_text()
        assert page.locator("[data-metric='X-Job-Id']").inner_text() == job_id
        page.screenshot(path=shots / "demo-reconstruct.png", full_page=True)
    assert network.outside(base) == []
    assert Path(shots / "demo-job.png").stat().st_size > 10_000
