"""Galaxy-image data: GalSim mock, Hugging Face / local sources, splits and DDP shards."""

from astropt.data.mock import (
    BANDS,
    IMAGE_SIZE,
    NOISE_SIGMA,
    PIXEL_SCALE,
    simulate,
    simulate_galaxy,
    write_mock_dataset,
)

__all__ = [
    "BANDS",
    "IMAGE_SIZE",
    "NOISE_SIGMA",
    "PIXEL_SCALE",
    "simulate",
    "simulate_galaxy",
    "write_mock_dataset",
]
