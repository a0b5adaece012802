"""The ``astropt`` command line.

Science commands live in this package; other installed packages (the web service)
add theirs through the ``astropt.commands`` entry-point group, so this package never
imports them.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from pydantic import ValidationError

from astropt.client import commands as client_commands

# These only talk to a service over HTTP: ``astropt jobs ...`` starts without importing torch
# (the science packages below import it), which a terminal user notices on every call.
CLIENT_COMMANDS = frozenset({"jobs", "reconstruct"})


def _science_modules() -> tuple:
    from astropt.checkpoints import commands as checkpoint_commands
    from astropt.codec_training import commands as codec_commands
    from astropt.data import commands as data_commands
    from astropt.finetune import commands as finetune_commands
    from astropt.science import checkpoint_commands as probe_checkpoint_commands
    from astropt.science import commands as science_commands
    from astropt.tokens import commands as token_commands
    from astropt.training import commands as training_commands

    return (
        training_commands,
        finetune_commands,
        data_commands,
        token_commands,
        checkpoint_commands,
        codec_commands,
        science_commands,
        probe_checkpoint_commands,
    )


def build_parser(client_only: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astropt", description="Train and use AstroPT models on AION galaxy-image tokens."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    client_commands.register(sub)
    if client_only:
        return parser
    for module in _science_modules():
        module.register(sub)
    for ep in entry_points(group="astropt.commands"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # the service extra is not installed
            print(f"note: commands from {ep.value} unavailable ({exc})", file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(client_only=bool(words) and words[0] in CLIENT_COMMANDS)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        print(f"error: invalid configuration:\n{_format_validation(exc)}", file=sys.stderr)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


def _format_validation(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(config)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
