"""Run under torchrun by test_train.py: train like ``astropt.training.train`` does, then save
this rank's parameters, so the test can compare ranks with each other and with one process."""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

from astropt.config import TrainConfig
from astropt.training.loop import _Trainer
from astropt.training.runtime import setup_runtime, teardown_runtime


def main(config_path: str) -> None:
    config = TrainConfig.from_yaml(config_path)
    runtime = setup_runtime(config)
    try:
        trainer = _Trainer(config, runtime, [])
        trainer.run(resume=False)
        params = {k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}
        save_file(params, str(Path(config.out_dir) / f"params_rank{runtime.rank}.safetensors"))
    finally:
        teardown_runtime(runtime)


if __name__ == "__main__":
    main(sys.argv[1])
