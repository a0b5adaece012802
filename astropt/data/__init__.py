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
from astropt.data.samples import DataSourceError, split_of
from astropt.data.sources import FiniteSplit, StreamSplit, ensure_mock, mock_dir, open_split

__all__ = [
    "BANDS",
    "IMAGE_SIZE",
    "NOISE_SIGMA",
    "PIXEL_SCALE",
    "DataSourceError",
    "FiniteSplit",
    "StreamSplit",
    "ensure_mock",
    "mock_dir",
    "open_split",
    "simulate",
    "simulate_galaxy",
    "split_of",
    "write_mock_dataset",
]
