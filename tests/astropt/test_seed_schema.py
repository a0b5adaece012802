"""Data in the seed data set's real schema: lower-case bands, ivar, mask (docs/data.md)."""

from __future__ import annotations

import numpy as np
import pytest

from astropt.config import DataSettings
from astropt.data import DataSourceError, open_split, simulate_galaxy
from astropt.data.samples import raw_sample_from_row
from tests.astropt.seed_schema import IMAGE_COLUMN, seed_row, write_seed_parquet

CENTRE = slice(77, 83)  # a 6x6 block on the galaxy's core


def seed_cfg(path, **kw) -> DataSettings:
    return DataSettings(
        source="local", path=str(path), image_column=IMAGE_COLUMN, val_fraction=0.25, **kw
    )


def test_seed_schema_file_reads_like_the_mock(tmp_path) -> None:
    write_seed_parquet(tmp_path / "part-0.parquet", 8)
    samples = list(open_split(seed_cfg(tmp_path), "train")) + list(
        open_split(seed_cfg(tmp_path), "val")
    )
    assert sorted(s["object_id"] for s in samples) == [f"mock-s0-{i:08d}" for i in range(8)]
    first = next(s for s in samples if s["object_id"] == "mock-s0-00000000")
    assert first["bands"] == ["DES-G", "DES-R", "DES-I", "DES-Z"]  # lower-case names matched
    np.testing.assert_array_equal(first["flux"], simulate_galaxy(0, 0)["flux"])
    # no noise_sigma column: the per-band noise comes from ivar
    np.testing.assert_allclose(
        first["noise_sigma"], simulate_galaxy(0, 0)["noise_sigma"], rtol=1e-5
    )


def test_bands_in_another_order_are_reordered_by_name() -> None:
    def reverse(image):
        for key in ("flux", "ivar", "mask"):
            image[key] = image[key][::-1].copy()
        image["band"] = image["band"][::-1]

    sample = _sample(seed_row(3, damage=reverse))
    np.testing.assert_array_equal(sample["flux"], simulate_galaxy(0, 3)["flux"])
    np.testing.assert_allclose(
        sample["noise_sigma"], simulate_galaxy(0, 3)["noise_sigma"], rtol=1e-5
    )


def _sample(row):
    return raw_sample_from_row(
        {"image": row[IMAGE_COLUMN], "object_id": row["object_id"]},
        ["DES-G", "DES-R", "DES-I", "DES-Z"],
        "test",
    )


@pytest.mark.parametrize("flag", ["mask", "ivar", "nan"])
def test_flagged_pixels_do_not_reach_the_codec_as_sky_or_as_their_bad_values(flag) -> None:
    # Guards the mask/ivar handling: a flagged block on the galaxy's core holds a cosmic-ray
    # value; it must come out as galaxy light (close to the noiseless truth), not as the
    # bad value and not as empty sky (0).
    def damage(image):
        image["flux"][:, CENTRE, CENTRE] = np.nan if flag == "nan" else 1e4
        if flag == "mask":
            image["mask"][:, CENTRE, CENTRE] = True
        elif flag == "ivar":
            image["ivar"][:, CENTRE, CENTRE] = 0.0

    galaxy = simulate_galaxy(0, 5)
    sample = _sample(seed_row(5, damage=damage))
    filled, truth = sample["flux"][:, CENTRE, CENTRE], galaxy["truth"][:, CENTRE, CENTRE]
    assert np.isfinite(sample["flux"]).all()
    light, true_light = filled.sum(axis=(1, 2)), truth.sum(axis=(1, 2))  # per band
    # a fill from the neighbours flattens the cusp of the core but keeps most of its light,
    # far above what sky (0 +- noise: sigma * 6 over 36 pixels) or the bad value would give
    assert (light > 0.3 * true_light).all() and (light < 1.2 * true_light).all(), (
        light,
        true_light,
    )
    assert (light > 20 * 6 * galaxy["noise_sigma"]).all()
    outside = np.ones(galaxy["flux"].shape, dtype=bool)
    outside[:, CENTRE, CENTRE] = False
    np.testing.assert_array_equal(sample["flux"][outside], galaxy["flux"][outside])  # untouched
    np.testing.assert_allclose(
        sample["noise_sigma"], galaxy["noise_sigma"], rtol=1e-5
    )  # flagged ivar ignored


def test_a_band_with_no_good_pixel_is_a_data_error() -> None:
    def blank(image):
        image["mask"][2] = True

    with pytest.raises(DataSourceError, match="band 2 has no unflagged pixel"):
        _sample(seed_row(1, damage=blank))


def test_mask_of_the_wrong_shape_is_a_data_error() -> None:
    def crop(image):
        image["mask"] = image["mask"][:, :10]

    with pytest.raises(DataSourceError, match="'mask' has shape"):
        _sample(seed_row(1, damage=crop))
