"""The galaxies of a catalogue over real HTTP (issue #26): ``astropt serve`` (API + worker,
SQLite, filesystem broker) embeds local cube files (mock galaxies and planted anomalies) with
the shipped model; then cut-outs (cached, the same pixels as the file, codec-decoded once the
files are gone), an object's page, galleries as JSON and PNG, the default outlier ranking on
the planted anomalies, and the refusals (404 / 4xx, never 500)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from astropt.data.anomalies import planted
from astropt.data.mock import simulate_galaxy
from astropt.images import centre_crop
from astropt.science.cutouts import CUTOUT_DIR, cutout_rgb
from tests.service.stack import Stack, service_env, unique_queue, wait_for_job

pytestmark = pytest.mark.slow
NORMAL, KINDS = 46, ("star_spikes", "satellite_trail")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, Path]]:
    tmp = tmp_path_factory.mktemp("galaxies")
    files = tmp / "data" / "cubes"
    (files / "odd").mkdir(parents=True)
    for i in range(NORMAL):
        np.save(files / f"g{i:03d}.npy", simulate_galaxy(606, i)["flux"])
    for kind in KINDS:  # in a subdirectory: object ids with a slash
        np.save(files / "odd" / f"{kind}.npy", planted(kind, 606, 0)["flux"])
    (tmp / "logs").mkdir()
    stack = Stack(service_env(tmp / "data", None, None, unique_queue()), tmp / "logs")
    try:
        stack.start_api(command="serve")
        client = stack.client()
        spec = {
            "kind": "embed",
            "device": "cpu",
            "data": {"source": "local", "path": str(files)},
            "embed": {"model": "shipped", "batch_size": 8},
        }
        job = client.post("/jobs", json=spec)
        assert job.status_code == 201, job.text
        wait_for_job(client, job.json()["id"], {"completed"}, timeout=300)
        yield stack, job.json()["id"], files
    finally:
        stack.stop()
        print(stack.logs())


def test_cutouts_are_the_rows_pixels_cached_and_decoded_once_the_files_are_gone(served) -> None:
    stack, job_id, files = served
    client = stack.client(with_key=False)  # a cut-out is a read, like the Parquet download
    got = client.get(f"/catalogues/{job_id}/objects/g003.npy/cutout.png")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png", got.text
    assert got.headers["x-image-origin"] == "pixels"
    image = np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))
    expected = cutout_rgb(
        centre_crop(simulate_galaxy(606, 3)["flux"])
    )  # the file's pixels, /reconstruct's stretch
    assert image.shape == (192, 192, 3) and np.array_equal(image[::2, ::2], expected)
    catalogue = Path(stack.env["ASTROPT_DATA_DIR"]) / "runs" / job_id / "catalogue"
    assert (
        len(list((catalogue / CUTOUT_DIR).glob("*.png"))) == 1
    )  # cached in the catalogue directory
    again = client.get(f"/catalogues/{job_id}/objects/g003.npy/cutout.png")
    assert again.content == got.content

    slashed = client.get(
        f"/catalogues/{job_id}/objects/{quote('odd/star_spikes.npy', safe='')}/cutout.png"
    )
    assert slashed.status_code == 200 and slashed.headers["x-image-origin"] == "pixels"

    shutil.rmtree(files)  # the source is gone: the cached codec tokens are decoded, and labelled so
    decoded = client.get(f"/catalogues/{job_id}/objects/g007.npy/cutout.png")
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["x-image-origin"] == "codec-decoded"
    assert (
        client.get(f"/catalogues/{job_id}/objects/g003.npy/cutout.png").content == got.content
    )  # cached


def test_an_objects_page_and_the_galleries(served) -> None:
    stack, job_id, _ = served
    client = stack.client()
    page = client.get(f"/catalogues/{job_id}/objects/g010.npy", params={"k": 5})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["object_id"] == "g010.npy" and body["row"] == 10 and "surprisal" in body["columns"]
    assert body["default_method"] == "surprisal_excess"
    assert set(body["anomaly"]) == {"surprisal_excess", "surprisal", "knn_cosine"}
    assert all(1 <= a["rank"] <= NORMAL + len(KINDS) for a in body["anomaly"].values())
    assert len(body["neighbours"]) == 5 and "g010.npy" not in [
        n["object_id"] for n in body["neighbours"]
    ]
    assert body["neighbours"][0]["cutout"].endswith("/cutout.png")
    assert body["cutout"] == f"/catalogues/{job_id}/objects/g010.npy/cutout.png"

    odd = client.get(f"/catalogues/{job_id}/gallery", params={"kind": "outliers", "n": 4}).json()
    top = [item["object_id"] for item in odd["items"]]
    # the two planted anomalies among 48 objects, both in the top 4 (chance: 4/48 each)
    assert {"odd/star_spikes.npy", "odd/satellite_trail.npy"} <= set(top), odd
    assert odd["title"] == "most unusual by surprisal_excess"
    near = client.get(
        f"/catalogues/{job_id}/gallery",
        params={"kind": "neighbours", "object_id": "g010.npy", "n": 6},
    ).json()
    assert near["items"][0]["object_id"] == "g010.npy" and near["items"][0]["caption"] == "query"
    worst = client.get(
        f"/catalogues/{job_id}/gallery", params={"kind": "worst", "label": "surprisal", "n": 5}
    ).json()
    errors = [item["score"] for item in worst["items"]]
    assert len(errors) == 5 and errors == sorted(errors, reverse=True)
    for params in (
        {"kind": "outliers", "n": 12},
        {"kind": "neighbours", "object_id": "g010.npy"},
        {"kind": "worst", "label": "surprisal", "n": 6},
    ):
        png = client.get(f"/catalogues/{job_id}/gallery.png", params=params)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG"), png.text
    old = client.get(
        f"/catalogues/{job_id}/outliers", params={"n": 3, "method": "knn_cosine"}
    ).json()
    assert old["method"] == "knn_cosine"
    mosaic = client.get(
        f"/catalogues/{job_id}/outliers", params={"n": 3, "format": "png"}
    )  # local data too now
    assert mosaic.status_code == 200 and mosaic.content.startswith(b"\x89PNG"), mosaic.text


def test_unknown_ids_and_bad_input_are_4xx(served) -> None:
    stack, job_id, _ = served
    client = stack.client()
    for url, status in [
        (f"/catalogues/{job_id}/objects/nope.npy/cutout.png", 404),
        (f"/catalogues/{job_id}/objects/nope.npy", 404),
        ("/catalogues/0123abcd/objects/g001.npy/cutout.png", 404),
        (f"/catalogues/{job_id}/objects/{'x' * 2000}/cutout.png", 422),
        (f"/catalogues/{job_id}/objects/%00/cutout.png", 404),
        (f"/catalogues/{job_id}/gallery?kind=nope", 422),
        (f"/catalogues/{job_id}/gallery?kind=neighbours", 422),
        (f"/catalogues/{job_id}/gallery?kind=worst&label=object_id", 422),
        (f"/catalogues/{job_id}/gallery?kind=neighbours&object_id=nope", 404),
        (f"/catalogues/{job_id}/gallery.png?n=65", 422),
        (f"/catalogues/{job_id}/gallery?n=1001", 422),
        (f"/catalogues/{job_id}/gallery?method=vibes", 422),
        (f"/catalogues/{job_id}/objects/g001.npy?k=0", 422),
    ]:
        answer = client.get(url)
        assert answer.status_code == status, (url, answer.status_code, answer.text)
    assert (
        stack.client(with_key=False).get(f"/catalogues/{job_id}/objects/g001.npy").status_code
        == 401
    )
    assert stack.client(with_key=False).get(f"/catalogues/{job_id}/gallery").status_code == 401


def test_the_thumbnail_map_and_its_layout(served) -> None:
    stack, job_id, _ = served
    client = stack.client()
    layout = client.get(f"/catalogues/{job_id}/thumbnails", params={"grid": 6, "tile": 16})
    assert layout.status_code == 200, layout.text
    body = layout.json()
    assert len(body["points"]["x"]) == NORMAL + len(KINDS) and 1 <= len(body["cells"]) <= 36
    shown = {c["object_id"] for c in body["cells"]}
    assert len(shown) == len(body["cells"]) and shown <= set(body["points"]["object_id"])
    extent = body["extent"]
    assert all(extent["xmin"] <= x <= extent["xmax"] for x in body["points"]["x"])
    sheet = client.get(body["sheet"])
    assert sheet.status_code == 200 and sheet.content.startswith(b"\x89PNG"), sheet.text
    assert Image.open(io.BytesIO(sheet.content)).size == (96, 96)
    assert (
        client.get(f"/catalogues/{job_id}/thumbnails.png", params={"grid": 33}).status_code == 422
    )
    assert (
        client.get(f"/catalogues/{job_id}/thumbnails", params={"method": "tsne"}).status_code == 422
    )
    assert (
        stack.client(with_key=False).get(f"/catalogues/{job_id}/thumbnails.png").status_code == 401
    )
