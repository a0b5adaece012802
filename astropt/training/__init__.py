"""Training AstroPT: the loop, its batches, the torch runtime, the run log and the CLI."""

from astropt.training.loop import TrainCallback, TrainResult, gpt_config, learning_rate, train

__all__ = ["TrainCallback", "TrainResult", "gpt_config", "learning_rate", "train"]
