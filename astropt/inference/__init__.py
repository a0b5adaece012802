"""Inference on user images: parsing uploads, reconstructing through codec + model, rendering."""

from astropt.images import Cube
from astropt.inference.uploads import InputError, UploadLimits, parse_bands, parse_upload

__all__ = ["Cube", "InputError", "UploadLimits", "parse_bands", "parse_upload"]
