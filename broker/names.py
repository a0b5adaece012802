"""Task and default queue names (the queue names themselves are settings)."""

TRAIN_TASK = "astropt.train"
INFER_TASK = "astropt.infer"
DEFAULT_TRAIN_QUEUE = "train"
DEFAULT_INFERENCE_QUEUE = "inference"
