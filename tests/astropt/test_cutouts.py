"""Cut-outs of catalogue rows and the thumbnail map, from a mock catalogue's manifest."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from astropt.data.mock import object_id, simulate_galaxy
from astropt.images import centre_crop
from astropt.science.cutouts import (
    DECODED,
    PIXELS,
    GalaxyImage,
    ImageUnavailable,
    RowImages,
    cutout_png,
    cutout_rgb,
    gallery_png,
    read_cached,
    write_cached,
)
from astropt.science.thumbnail_map import extent, thumbnail_cells, thumbnail_sheet

MOCK = {"data_source": {"kind": "mock", "seed": 12, "n": 30}}


def test_a_mock_rows_image_is_its_centre_crop_and_a_wrong_id_is_refused():
    images = RowImages(MOCK)
    image = images.image(4, object_id(12, 4))
    assert image.origin == PIXELS and image.flux.shape == (4, 96, 96)
    assert np.array_equal(image.flux, centre_crop(simulate_galaxy(12, 4)["flux"]))
    with pytest.raises(ImageUnavailable, match="not galaxy 5"):
        images.image(5, object_id(12, 4))
    with pytest.raises(ImageUnavailable, match="no images"):
        RowImages({"data_source": {"kind": "survey"}}).image(0, "x")
    with pytest.raises(ImageUnavailable, match="names no token data set"):
        RowImages({"data_source": {"kind": "tokens"}}).image(0, "x")


def test_cutouts_and_galleries_are_pngs_of_the_stretch(tmp_path):
    image = RowImages(MOCK).image(2, object_id(12, 2))
    png = cutout_png(image)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape == (192, 192, 3) and np.array_equal(
        pixels[::2, ::2], cutout_rgb(image.flux)
    )
    decoded = np.asarray(
        Image.open(io.BytesIO(cutout_png(GalaxyImage(image.flux, DECODED)))).convert("RGB")
    )
    assert not np.array_equal(decoded, pixels)  # labelled in its corner
    sheet = Image.open(
        io.BytesIO(gallery_png([image, None, image], ["a", "b", "c"], "t", columns=2, tile=64))
    )
    assert sheet.size == (128, 20 + 2 * (64 + 14))

    assert read_cached(tmp_path, "a/b") is None
    write_cached(tmp_path, "a/b", png, DECODED)
    assert read_cached(tmp_path, "a/b") == (png, DECODED)


def test_each_cell_shows_the_object_nearest_its_centre():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 10, size=(500, 2))
    xy[7] = [np.nan, 1.0]  # no position: never shown
    box = (0.0, 10.0, 0.0, 10.0)
    cells = thumbnail_cells(xy, 5, box)
    assert (
        len(cells) == 25
        and len({(c.i, c.j) for c in cells}) == 25
        and 7 not in {c.row for c in cells}
    )
    for c in cells:  # inside its cell, and no object of the cell nearer the centre
        centre = np.array([2 * c.i + 1, 2 * c.j + 1])
        inside = np.flatnonzero((xy[:, 0] // 2 == c.i) & (xy[:, 1] // 2 == c.j))
        assert c.row in inside
        assert np.linalg.norm(xy[c.row] - centre) == pytest.approx(
            np.linalg.norm(xy[inside] - centre, axis=1).min()
        )
    assert (
        extent(np.array([[1.0, 1.0]]))[0] < 1.0 < extent(np.array([[1.0, 1.0]]))[1]
    )  # never zero-sized

    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    png = thumbnail_sheet([c for c in cells if c.i == 0 and c.j == 4], 5, 16, lambda row: red)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert sheet.shape == (80, 80, 3)
    assert (sheet[:16, :16, 0] == 255).all() and (
        sheet[16:, :, 0] < 50
    ).all()  # cell (0, 4): top left
