"""``astropt probe-checkpoints RUN_DIR``: R^2 per label against the step of every checkpoint."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from astropt.science.commands import add_source_flags
from astropt.torch_policy import set_threads

DEFAULT_LABELS = ("mag_r", "g_r", "disk_hlr_arcsec", "disk_q", "bulge_fraction")


def run_probe_checkpoints(args: argparse.Namespace) -> int:
    from astropt.science.checkpoint_probes import probe_checkpoints, write_report
    from astropt.science.commands import source_and_options

    set_threads(args.threads)
    source, options = source_and_options(args)
    bar = tqdm(unit="ckpt", desc="probing", disable=args.quiet)

    def progress(name: str, done: int, total: int) -> None:
        bar.total = total
        bar.set_postfix_str(name)
        bar.update(done - bar.n)

    report = probe_checkpoints(
        args.run_dir,
        list(args.labels),
        source,
        options,
        folds=args.folds,
        alpha=args.alpha,
        random_init=None if args.no_random_init else args.random_init,
        device=args.device,
        progress=progress,
    )
    bar.close()
    rows = [*report.rows, *([report.random_init] if report.random_init else [])]
    print(
        f"{'checkpoint':<14}{'step':>7}" + "".join(f"{label[:14]:>16}" for label in report.labels)
    )
    for row in rows:
        cells = "".join(
            f"{'-' if row.r2(label) is None else format(row.r2(label), '.3f'):>16}"
            for label in report.labels
        )
        print(f"{row.checkpoint:<14}{'' if row.step is None else row.step:>7}{cells}")
    json_path, png_path = write_report(report, args.out or args.run_dir)
    print(f"wrote {json_path} and {png_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe-checkpoints",
        help="ridge-probe every saved checkpoint of a run; JSON + PNG of R^2 vs step",
    )
    p.add_argument("run_dir", help="a run directory (its checkpoints/step_*/ and last/)")
    p.add_argument("--labels", nargs="+", default=list(DEFAULT_LABELS))
    add_source_flags(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--alpha", type=float, default=100.0, help="ridge lambda")
    p.add_argument(
        "--random-init",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of the same-shape random-init control (default 0)",
    )
    p.add_argument("--no-random-init", action="store_true", help="skip the random-init control")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", help="directory for probe_checkpoints.json/.png (default: RUN_DIR)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_probe_checkpoints)
