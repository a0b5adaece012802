"""``astropt serve | api | worker``: registered through the ``astropt.commands`` entry point."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

from state.settings import Settings, get_settings

log = logging.getLogger("astropt.service")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="standalone: API + worker + embedded broker + SQLite in one command",
        description="Run the API, one training worker and a filesystem broker (no Redis) with a "
        "SQLite store under ASTROPT_DATA_DIR (default ./astropt-data). Open /docs in a browser.",
    )
    _add_http_arguments(serve)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="submit a short CPU job at start-up: a small model trained from random weights "
        "on mock galaxies, its loss falling and its predictions sharpening within minutes",
    )
    serve.set_defaults(func=run_serve)

    api = subparsers.add_parser("api", help="the HTTP API only (workers run separately)")
    _add_http_arguments(api)
    api.set_defaults(func=run_api)

    worker = subparsers.add_parser(
        "worker", help="a training worker (one per GPU: set CUDA_VISIBLE_DEVICES per worker)"
    )
    worker.add_argument("--name", default=None, help="worker node name (default: train-<pid>)")
    worker.add_argument("--loglevel", default="info")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="jobs at once; their devices never overlap (see docs/operations.md#scaling)",
    )
    # What `astropt serve` starts its embedded worker with: no Celery banner, no superuser banner
    # (serve prints its own one-line note when it runs as root).
    worker.add_argument("--standalone", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(func=run_worker)

    from service.users.cli import register as register_users

    register_users(subparsers)


# Longer than a client's idle keep-alive (httpx: 5 s, uvicorn's own default too): the client
# closes an idle connection first, so a request sent just as the server gives up on it ("server
# disconnected without sending a response") cannot happen to a client that polls every 5 s.
KEEP_ALIVE_S = 65


def _add_http_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    uvicorn.run(
        create_app(get_settings()),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from state.store import migrate

    settings = get_settings()
    settings.ensure_dirs()
    migrate(settings.resolved_database_url)
    from worker import tasks  # noqa: F401  (registers the task and the recovery hook)
    from worker.celery_app import app

    name = args.name or f"train-{os.getpid()}"
    command = ["worker"]
    if getattr(args, "standalone", False):
        _quiet_standalone_worker()
        # The terminal is the user's: progress bars stay bars, not a WARNING log line per refresh.
        app.conf.worker_redirect_stdouts = False
        command = ["--quiet", "worker"]  # no Celery banner: serve has printed what matters
    app.worker_main(
        [
            *command,
            "--queues",
            settings.train_queue,
            "--concurrency",
            str(max(1, args.concurrency)),
            "--prefetch-multiplier",
            "1",
            "--hostname",
            f"{name}@%h",
            "--loglevel",
            args.loglevel,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service import demo
    from service.app import create_app
    from state.store import migrate

    settings = get_settings()
    settings.ensure_dirs()
    migrate(settings.resolved_database_url)
    if settings.uses_filesystem_broker:
        from worker.tasks import recover_orphaned_jobs

        # Nothing else can run this data directory's jobs: anything "running" was interrupted.
        recover_orphaned_jobs(settings, lease_seconds=0)
    app = create_app(settings)
    demo_job = demo.submit(app, settings) if args.demo else None
    # First on the screen: where to look and what the demo does; the worker's logs follow.
    print(
        demo.start_up_text(args.host, args.port, settings.data_dir.resolve(), demo_job), flush=True
    )
    worker = _spawn_worker(settings)
    # uvicorn re-raises a SIGTERM it caught once it has shut down; with the default handler that
    # ends this process on the spot and the worker outlives it. As an exception, `finally` runs.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
    finally:
        _stop(worker)
    return 0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The standalone worker, in a process group of its own (its pool processes with it), killed
    by the kernel if this process dies without stopping it (kill -9); its pool processes die
    with it (worker.tasks), and the interrupted job resumes on the next start."""
    from worker.launch.lifeline import die_with_parent

    env = dict(os.environ, ASTROPT_DATA_DIR=str(settings.data_dir.resolve()))
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "--name", "standalone", "--standalone"],
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def _quiet_standalone_worker() -> None:
    """Celery's multi-line "superuser privileges" SecurityWarning, only that one: the embedded
    worker runs as the user who typed `astropt serve`, who has been told in one line already."""
    import warnings

    from celery.exceptions import SecurityWarning

    warnings.filterwarnings(
        "ignore",
        message="You're running the worker with superuser privileges",
        category=SecurityWarning,
    )


def _stop(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> None:
    """Warm shutdown of the worker, then its whole group (pool processes included) is killed:
    an interrupted job resumes from its last checkpoint on the next start."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
    process.wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m service.cli ...`` (what ``astropt serve`` uses to start its worker)."""
    parser = argparse.ArgumentParser(prog="astropt-service")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
