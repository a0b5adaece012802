"""``astropt jobs ...`` and ``astropt reconstruct`` only talk HTTP: they start without torch."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from astropt.cli import main
try:
    main(["jobs", "--help"])
except SystemExit:
    pass
print("torch" in sys.modules, "datasets" in sys.modules)
"""


def test_client_commands_do_not_import_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout


def test_the_full_parser_still_lists_every_command() -> None:
    from astropt.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {
        "jobs",
        "reconstruct",
        "train",
        "finetune",
        "embed",
        "probe",
        "search",
        "probe-checkpoints",
    } <= set(commands)
