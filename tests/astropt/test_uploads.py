"""Parsing uploaded FITS / NumPy files into flux cubes, and every way they can be refused."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest
from astropy.io import fits

from astropt.constants import DEFAULT_BANDS
from astropt.inference.uploads import InputError, UploadLimits, parse_bands, parse_upload


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 1.0, (4, 128, 112)).astype(np.float32)


def fits_bytes(*hdus: fits.hdu.base.ExtensionHDU) -> bytes:
    stream = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(stream)
    return stream.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def status_of(data: bytes, name: str = "x.fits", **kwargs) -> tuple[int, str]:
    """The HTTP status the service answers an upload with (its one mapping) and the message."""
    from service.inference.errors import http_status

    with pytest.raises(InputError) as info:
        parse_upload(data, name, **kwargs)
    return http_status(info.value), info.value.message


def test_single_hdu_cube_defaults_to_des_griz(cube):
    parsed = parse_upload(fits_bytes(fits.PrimaryHDU(cube)), "cube.fits")
    assert parsed.bands == DEFAULT_BANDS
    assert parsed.flux.dtype == np.float32 and parsed.flux.shape == (4, 128, 112)
    np.testing.assert_array_equal(parsed.flux, cube)
    assert parsed.warnings == []


def test_cube_in_first_extension_with_header_bands_reordered(cube):
    header = fits.Header()
    for k, name in enumerate(["z", "i", "r", "g"], start=1):
        header[f"BAND{k}"] = name
    data = fits_bytes(fits.PrimaryHDU(), fits.ImageHDU(cube[::-1].copy(), header=header))
    parsed = parse_upload(data, "cube.fits")
    assert parsed.bands == DEFAULT_BANDS
    np.testing.assert_array_equal(parsed.flux, cube)


def test_one_hdu_per_band_named_by_filter_keyword(cube):
    hdus = [fits.PrimaryHDU()]
    for plane, name in zip(cube, ["g DECam SDSS c0001", "r", "i", "z"], strict=True):
        hdu = fits.ImageHDU(plane)
        hdu.header["FILTER"] = name
        hdus.append(hdu)
    parsed = parse_upload(fits_bytes(*hdus), "bands.fits")
    assert parsed.bands == DEFAULT_BANDS
    np.testing.assert_array_equal(parsed.flux, cube)


def test_three_bands_named_by_extname_keep_mask_warning(cube):
    hdus = [fits.PrimaryHDU()] + [
        fits.ImageHDU(cube[i], name=n) for i, n in [(0, "G"), (1, "R"), (3, "Z")]
    ]
    parsed = parse_upload(fits_bytes(*hdus), "grz.fits")
    assert parsed.bands == ("DES-G", "DES-R", "DES-Z")
    assert parsed.missing_bands == ("DES-I",)
    assert any("DES-I is missing" in w for w in parsed.warnings)


def test_three_bands_need_names(cube):
    status, message = status_of(fits_bytes(fits.PrimaryHDU(cube[:3])))
    assert status == 422 and "none are named" in message
    parsed = parse_upload(fits_bytes(fits.PrimaryHDU(cube[:3])), "x.fits", bands="g,r,i")
    assert parsed.bands == ("DES-G", "DES-R", "DES-I")


def test_tile_compressed_fz_and_gzip_fits(cube):
    fz = fits_bytes(
        fits.PrimaryHDU(), fits.CompImageHDU(cube, compression_type="GZIP_1", quantize_level=0.0)
    )
    np.testing.assert_array_equal(parse_upload(fz, "x.fits.fz").flux, cube)
    gz = gzip.compress(fits_bytes(fits.PrimaryHDU(cube)))
    np.testing.assert_array_equal(parse_upload(gz, "x.fits.gz").flux, cube)


def test_big_endian_and_integer_data(cube):
    big = cube.astype(">f8")
    parsed = parse_upload(npy_bytes(big), "x.npy")
    assert parsed.flux.dtype == np.dtype("float32") and parsed.flux.dtype.isnative
    np.testing.assert_allclose(parsed.flux, cube)
    ints = parse_upload(fits_bytes(fits.PrimaryHDU((cube * 100).astype(">i2"))), "x.fits")
    np.testing.assert_array_equal(ints.flux, (cube * 100).astype(np.int16).astype(np.float32))


def test_channels_last_npy_and_batch_axis(cube):
    last = np.moveaxis(cube, 0, -1)
    np.testing.assert_array_equal(parse_upload(npy_bytes(last), "x.npy").flux, cube)
    np.testing.assert_array_equal(parse_upload(npy_bytes(cube[None]), "x.npy").flux, cube)


def test_256_pixel_cube_kept_whole():
    big = np.ones((4, 256, 256), np.float32)
    assert parse_upload(npy_bytes(big), "x.npy").flux.shape == (4, 256, 256)


def test_npz_prefers_flux_member_and_refuses_pickles(cube):
    stream = io.BytesIO()
    np.savez_compressed(stream, other=np.zeros(3), flux=cube)
    parsed = parse_upload(stream.getvalue(), "x.npz")
    np.testing.assert_array_equal(parsed.flux, cube)
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    status, message = status_of(objects.getvalue(), "x.npy")
    assert status == 422 and "objects" in message


def test_nan_pixels_zeroed_with_warning_or_rejected(cube):
    holes = cube.copy()
    holes[0, :5, :5] = np.nan
    holes[1, 0, 0] = np.inf
    parsed = parse_upload(npy_bytes(holes), "x.npy")
    assert np.isfinite(parsed.flux).all() and parsed.flux[0, 0, 0] == 0.0
    assert any("26 NaN/inf" in w for w in parsed.warnings)
    holes[2, 10:120, 5:110] = np.nan
    status, message = status_of(npy_bytes(holes), "x.npy")
    assert status == 422 and "DES-I" in message and "NaN/inf" in message


@pytest.mark.parametrize(
    ("array", "kwargs", "needle"),
    [
        (np.zeros((4, 64, 200), np.float32), {}, "at least 96x96"),
        (np.zeros((2, 128, 128), np.float32), {}, "2 bands"),
        (np.zeros((5, 128, 128), np.float32), {}, "5 bands"),
        (np.zeros((128, 128), np.float32), {}, "2-D array"),
        (np.zeros((100, 128, 128), np.float32), {}, "which axis"),
        (np.zeros((4, 128, 128), np.complex64), {}, "complex"),
        (np.zeros((4, 128, 128), bool), {}, "bool"),
        (np.zeros((4, 128, 128), np.float32), {"bands": "g,r,i"}, "3 band names"),
        (np.zeros((4, 128, 128), np.float32), {"bands": "g,r,r,z"}, "repeat"),
        (np.zeros((4, 128, 128), np.float32), {"bands": "g,r,i,y"}, "unknown band"),
        (np.zeros((4, 128, 128), np.float32), {"bands": "HSC-G,r,i,z"}, "HSC"),
    ],
)
def test_bad_arrays_are_422(array, kwargs, needle):
    status, message = status_of(npy_bytes(array), "x.npy", **kwargs)
    assert status == 422 and needle in message


def test_size_limits_are_413(cube):
    limits = UploadLimits(max_upload_bytes=1000)
    assert status_of(npy_bytes(cube), "x.npy", limits=limits)[0] == 413
    assert (
        status_of(
            npy_bytes(np.zeros((4, 128, 300), np.float32)),
            "x.npy",
            limits=UploadLimits(max_side=256),
        )[0]
        == 413
    )


def test_gzip_bomb_stops_at_limit():
    bomb = gzip.compress(b"\0" * (64 * 2**20))
    assert len(bomb) < 2**20
    status, message = status_of(
        bomb, "bomb.fits.gz", limits=UploadLimits(max_decompressed_bytes=8 * 2**20)
    )
    assert status == 413 and "inflates" in message


def test_fz_and_npz_bombs_checked_from_headers():
    zeros = np.zeros((4, 512, 512), np.float32)
    fz = fits_bytes(
        fits.PrimaryHDU(), fits.CompImageHDU(zeros, compression_type="GZIP_1", quantize_level=0.0)
    )
    small = UploadLimits(max_decompressed_bytes=2**20)
    assert len(fz) < 2**20
    assert status_of(fz, "x.fz", limits=small)[0] == 413
    stream = io.BytesIO()
    np.savez_compressed(stream, flux=zeros)
    assert len(stream.getvalue()) < 2**20
    assert status_of(stream.getvalue(), "x.npz", limits=small)[0] == 413


def test_corrupt_and_unsupported_files(cube):
    assert status_of(b"", "x.fits")[0] == 422
    assert status_of(b"\x89PNG\r\n\x1a\n....", "x.png")[0] == 415
    assert status_of(b"not a fits file at all", "x.fits")[0] == 422
    truncated = fits_bytes(fits.PrimaryHDU(cube))[:5000]
    assert status_of(truncated, "x.fits")[0] == 422
    assert status_of(gzip.compress(npy_bytes(cube))[:-100], "x.npy.gz")[0] == 422
    assert status_of(npy_bytes(cube)[:-10], "x.npy")[0] == 422
    bad_zip = io.BytesIO()
    with zipfile.ZipFile(bad_zip, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert status_of(bad_zip.getvalue(), "x.npz")[0] == 422


def test_fits_layout_errors(cube):
    assert "single 2-D image" in status_of(fits_bytes(fits.PrimaryHDU(cube[0])))[1]
    assert "no image data" in status_of(fits_bytes(fits.PrimaryHDU()))[1]
    mixed = [fits.PrimaryHDU(), fits.ImageHDU(cube[0]), fits.ImageHDU(cube[1, :100, :100])]
    assert "differ in size" in status_of(fits_bytes(*mixed))[1]
    partly = [
        fits.PrimaryHDU(),
        fits.ImageHDU(cube[0], name="G"),
        fits.ImageHDU(cube[1]),
        fits.ImageHDU(cube[3], name="Z"),
    ]
    assert "no BAND/FILTER" in status_of(fits_bytes(*partly))[1]


def test_parse_bands_spellings():
    assert parse_bands("g, des-r ,DES_I,z") == DEFAULT_BANDS
    assert parse_bands("") is None and parse_bands(None) is None
