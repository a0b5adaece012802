"""``astropt jobs ...`` and ``astropt reconstruct``: the service from a terminal.

URL, API key and token come from ``--url`` / ``--api-key`` / ``--token`` or ``$ASTROPT_URL`` /
``$ASTROPT_API_KEY`` / ``$ASTROPT_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from astropt.client.api import FINISHED, Client, ClientError

SPARK = "▁▂▃▄▅▆▇█"


def register(subparsers: argparse._SubParsersAction) -> None:
    jobs = subparsers.add_parser(
        "jobs", help="submit, list, watch and manage training jobs on a service"
    )
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)

    submit = actions.add_parser("submit", help="queue a training job from a YAML/JSON config")
    submit.add_argument("config", help="training config (the `astropt train --config` format)")
    submit.add_argument("--follow", action="store_true", help="watch it until it finishes")
    submit.set_defaults(func=run_submit)

    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--phase", default=None, help="only jobs in this phase")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=run_list)

    for name, text, func in (
        ("show", "one job: phase, progress, losses, checkpoints", run_show),
        ("cancel", "cancel a queued or running job", run_cancel),
        ("resume", "resume a finished job from its last checkpoint", run_resume),
        ("delete", "delete a finished job and its files", run_delete),
        ("watch", "a live loss curve until the job finishes", run_watch),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
        if name == "resume":
            action.add_argument("--max-iters", type=int, default=None, help="new total iterations")
        action.set_defaults(func=func)

    recon = subparsers.add_parser(
        "reconstruct", help="reconstruct a FITS/NumPy cube with a service's model"
    )
    recon.add_argument("file", help="FITS or .npy cube (g, r, i, z in nanomaggies)")
    recon.add_argument(
        "-o",
        "--output",
        required=True,
        help="output: .png (panel), .fits or .npy (the reconstructed cube)",
    )
    recon.add_argument("--job", default=None, help="job id (default: the latest completed job)")
    recon.add_argument("--checkpoint", default=None, help="best | last | step_NNNNNN")
    recon.add_argument("--mode", choices=("predict", "complete", "codec"), default="predict")
    recon.add_argument("--bands", default=None, help="bands of the file, e.g. g,r,z")
    recon.set_defaults(func=run_reconstruct)

    for parser in (recon, *actions.choices.values()):
        parser.add_argument(
            "--url",
            default=None,
            help="service URL (default $ASTROPT_URL or http://127.0.0.1:8000)",
        )
        parser.add_argument("--api-key", default=None, help="API key (default $ASTROPT_API_KEY)")
        parser.add_argument(
            "--token", default=None, help="your user token (default $ASTROPT_TOKEN)"
        )


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key, token=args.token)


def _guard(run):  # service refusals become one clear line and exit status 1
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    wrapped.__name__ = run.__name__
    return wrapped


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@_guard
def run_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.submit(args.config)
        print(f"submitted {job['id']} ({job['phase']})")
        if args.follow:
            return _watch(client, job["id"])
    return 0


@_guard
def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    with _client(args) as client:
        items = client.list(args.phase, args.limit)
    table = Table("id", "phase", "progress", "best val loss", "created")
    for job in items:
        p = job["progress"]
        table.add_row(
            job["id"],
            job["phase"],
            f"{p['iteration']}/{p['max_iters']}",
            _loss(job["best_val_loss"]),
            job["created_at"][:19].replace("T", " "),
        )
    Console(width=120).print(table)
    return 0


@_guard
def run_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get(args.job_id)
    p = job["progress"]
    lines = [
        f"job {job['id']}: {job['phase']}",
        f"progress: {p['iteration']}/{p['max_iters']}",
        f"best val loss: {_loss(job['best_val_loss'])} (step {job['best_val_step']})",
        f"device: {job['device'] or '-'}  parameters: {job['n_params'] or '-'}  attempts: {job['attempts']}",
    ]
    if job["failure_reason"]:
        lines.append(f"failure: {job['failure_reason']}")
    for ckpt in job["checkpoints"]:
        lines.append(f"checkpoint {ckpt['name']} (step {ckpt['step']}): {ckpt['download_url']}")
    print("\n".join(lines))
    return 0


@_guard
def run_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(f"{args.job_id}: {client.cancel(args.job_id)['phase']}")
    return 0


@_guard
def run_resume(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(f"{args.job_id}: {client.resume(args.job_id, args.max_iters)['phase']}")
    return 0


@_guard
def run_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete(args.job_id)
    print(f"{args.job_id}: deleted")
    return 0


@_guard
def run_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _watch(client, args.job_id)


def sparkline(values: list[float], width: int = 60) -> str:
    """The last ``width`` values as block characters (low to high)."""
    values = values[-width:]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] for v in values)


def _render(job_id: str, state: dict[str, Any], train: list[float], val: list[float]) -> Any:
    from rich.panel import Panel
    from rich.text import Text

    p = state.get("progress") or {}
    text = Text()
    text.append(
        f"{state.get('phase', '?')}  iteration {p.get('iteration', 0)}/{p.get('max_iters', '?')}"
    )
    if p.get("tokens_per_s"):
        text.append(f"  {p['tokens_per_s']:.0f} tokens/s")
    text.append(
        f"\ntrain loss {_loss(train[-1] if train else None)}  {sparkline(train)}\n", style="cyan"
    )
    text.append(f"val loss   {_loss(val[-1] if val else None)}  {sparkline(val)}", style="yellow")
    if state.get("failure_reason"):
        text.append(f"\nfailed: {state['failure_reason']}", style="red")
    return Panel(text, title=f"job {job_id}")


def _watch(client: Client, job_id: str) -> int:
    from rich.console import Console
    from rich.live import Live

    job = client.get(job_id)
    train = list(job["curves"]["train_loss"]["values"])
    val = list(job["curves"]["val_loss"]["values"])
    last = {
        "train_loss": max(job["curves"]["train_loss"]["steps"], default=-1),
        "val_loss": max(job["curves"]["val_loss"]["steps"], default=-1),
    }
    state: dict[str, Any] = job
    console = Console()
    with Live(_render(job_id, state, train, val), console=console, auto_refresh=False) as live:
        while state["phase"] not in FINISHED:
            for event, data in client.events(job_id):
                if event != "progress":
                    continue
                state = data
                for name, series in (("train_loss", train), ("val_loss", val)):
                    for step, value in zip(
                        data["curves"][name]["steps"], data["curves"][name]["values"], strict=True
                    ):
                        if step > last[name]:
                            series.append(value)
                            last[name] = step
                live.update(_render(job_id, state, train, val), refresh=True)
            state = client.get(job_id)
        live.update(_render(job_id, state, train, val), refresh=True)
    print(f"{job_id}: {state['phase']}, best val loss {_loss(state.get('best_val_loss'))}")
    return 0 if state["phase"] == "completed" else 1


@_guard
def run_reconstruct(args: argparse.Namespace) -> int:
    out = Path(args.output)
    with _client(args) as client:
        if out.suffix == ".png":
            png, metrics = client.reconstruct_png(
                args.file, args.job, args.checkpoint, args.mode, args.bands
            )
            out.write_bytes(png)
        elif out.suffix in (".fits", ".npy"):
            response = client._reconstruct(
                args.file, out.suffix[1:], args.job, args.checkpoint, args.mode, args.bands, {}
            )
            out.write_bytes(response.content)
            metrics = {k: v for k, v in response.headers.items() if k.lower().startswith("x-")}
        else:
            raise ValueError(f"output {out} must end in .png, .fits or .npy")
    shown = {k.lower(): v for k, v in metrics.items()}
    summary = {
        name: shown.get(f"x-{name}")
        for name in ("job-id", "checkpoint", "mode", "token-accuracy", "mse")
    }
    print(f"wrote {out}: " + json.dumps(summary))
    return 0
