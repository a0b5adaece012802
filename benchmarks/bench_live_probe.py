"""What the live probe costs: a CPU run of the mock-small config with ``live_probe`` on.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_live_probe.py \
        [--steps 200] [--set model.n_layer=2 --set model.n_embd=64 ...] [--probe n_galaxies=128] [--compare]

The probe only adds work (it runs inside the evaluation and leaves the rest alone), so its
cost is the sum of the ``probe_time_s`` it reports; the overhead is that sum over the time
of the run without it (the run's wall time minus the sum). ``--compare`` also trains the
same run without the probe and reports both wall times (noisier on a shared machine).
Prints a JSON report. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from astropt.config import TrainConfig
from astropt.training import TrainCallback, train

CONFIG = Path(__file__).resolve().parents[1] / "astropt" / "configs" / "mock-small.yaml"


class Clock(TrainCallback):
    def __init__(self) -> None:
        self.t0: float | None = None
        self.probe_s: list[float] = []
        self.r2: dict[int, dict[str, float]] = {}

    def on_start(self, info):
        self.info, self.t0 = info, time.perf_counter()

    def on_eval(self, step, metrics):
        if "probe_time_s" in metrics:
            self.probe_s.append(metrics["probe_time_s"])
            self.r2[step] = {
                k.removeprefix("probe_r2/"): round(v, 3)
                for k, v in metrics.items()
                if k.startswith("probe_r2/")
            }


def run(config: TrainConfig) -> tuple[float, Clock]:
    clock = Clock()
    train(config, [clock], resume=False)
    return time.perf_counter() - (clock.t0 or 0.0), clock


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--codec", default="shipped")
    ap.add_argument("--out", default="runs/bench-live-probe")
    ap.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    ap.add_argument(
        "--probe", action="append", default=[], help="live_probe override, e.g. n_galaxies=64"
    )
    ap.add_argument("--compare", action="store_true", help="also train without the probe")
    args = ap.parse_args()
    base = [f"codec={args.codec}", f"max_iters={args.steps}", "n_val_images=0", *args.set]
    probe = ["live_probe={}", *(f"live_probe.{item}" for item in args.probe)]
    config = TrainConfig.from_yaml(CONFIG, [*base, f"out_dir={args.out}/probed", *probe])
    wall, clock = run(config)
    probe_s = sum(clock.probe_s)
    settings = config.live_probe
    report = {
        "model": f"{config.model.n_layer}x{config.model.n_embd}",
        "steps": args.steps,
        "eval_interval": config.eval_interval,
        "eval_iters": config.eval_iters,
        "batch_size": config.batch_size,
        "live_probe": settings.model_dump() if settings else None,
        "galaxies_probed": min(settings.n_galaxies, clock.info.get("n_val", 0)) if settings else 0,
        "probes": len(clock.probe_s),
        "wall_s": round(wall, 1),
        "probe_s": round(probe_s, 2),
        "probe_s_each": [round(t, 3) for t in clock.probe_s],
        "overhead": round(probe_s / max(wall - probe_s, 1e-9), 4),
        "r2_first_last": {str(s): clock.r2[s] for s in (min(clock.r2), max(clock.r2))}
        if clock.r2
        else {},
    }
    if args.compare:
        plain_wall, _ = run(TrainConfig.from_yaml(CONFIG, [*base, f"out_dir={args.out}/plain"]))
        report["wall_s_without"] = round(plain_wall, 1)
        report["overhead_by_wall"] = round(wall / plain_wall - 1, 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
