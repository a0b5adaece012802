"""The service's commands reach `astropt` through the entry-point group, not through imports."""

from __future__ import annotations

import subprocess
import sys

from astropt.cli import build_parser


def test_serve_api_and_worker_are_astropt_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--demo"])
    assert (args.host, args.port, args.demo) == ("0.0.0.0", 9000, True)
    assert args.func.__name__ == "run_serve"
    assert parser.parse_args(["api"]).func.__name__ == "run_api"
    assert parser.parse_args(["worker", "--name", "gpu1"]).name == "gpu1"


def test_the_astropt_package_does_not_import_the_service() -> None:
    code = (
        "import sys, astropt, astropt.training, astropt.cli, astropt.config;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'worker')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_worker_main_process_modules_do_not_import_torch() -> None:
    # The CLI starts fast: the worker imports the training code only once its Celery worker
    # starts (worker/preload.py), and the recovery thread imports the placement module.
    code = (
        "import sys, worker.tasks, worker.launch.placement, service.cli;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
