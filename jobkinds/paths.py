"""File paths a client sends: refused with a 422 naming the field before the file system sees them.

A path with a NUL byte, a component longer than a file name may be, or more bytes than a path
may have makes ``open``/``stat`` raise instead of answering; and a path outside the allowed
roots must get the same answer whether it exists or not (no file-existence oracle). So every
client path is checked here, in that order, before anything looks it up: shape, then roots.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from state.errors import SpecInvalid
from state.settings import Settings

NAME_MAX = 255  # bytes in one path component (Linux, macOS)
PATH_MAX = 4095  # bytes in a whole path
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
CODEC_WORDS = ("default", "shipped")


def shown(value: str, limit: int = 120) -> str:
    """A client's value as a message may quote it (bounded, control characters escaped)."""
    text = value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def path_problem(value: str) -> str | None:
    """Why ``value`` can be no file path on this machine, or None."""
    if "\x00" in value:
        return "contains a NUL byte, which no file path may hold"
    try:
        encoded = os.fsencode(value)
    except UnicodeEncodeError:
        return "is not valid text (a lone surrogate)"
    if len(encoded) > PATH_MAX:
        return f"is {len(encoded)} bytes long; a path may be at most {PATH_MAX}"
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > NAME_MAX:
        return f"has a component of {longest} bytes; a file or directory name may be at most {NAME_MAX}"
    return None


def roots_text(roots: list[Path]) -> str:
    return ", ".join(str(root) for root in roots)


def checked_path(
    field: str, value: str, roots: list[Path], setting: str = "ASTROPT_DATA_ROOTS"
) -> Path:
    """``value`` resolved, if it is a well-formed path inside one of ``roots``; else a 422 naming
    ``field``. Existing or not, a path outside the roots gets the same message."""
    problem = path_problem(value)
    if problem is not None:
        raise SpecInvalid(
            field,
            f"{field} ({shown(value)}) {problem}; give a path inside the allowed "
            f"data roots: {roots_text(roots)}",
        )
    try:
        resolved = Path(value).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # ~nobody, a symlink loop
        raise SpecInvalid(field, f"{field} ({shown(value)}) cannot be resolved: {exc}") from exc
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise SpecInvalid(
            field,
            f"{field} ({shown(value)}) is outside the allowed data roots: "
            f"{roots_text(roots)} (setting {setting})",
        )
    return resolved


def check_spec_paths(body: Any, settings: Settings) -> None:
    """Every file path of a raw ``POST /jobs`` body, before the spec is validated (the schema's
    own checks look at the file system): ``data.path``, a codec directory, ``init_from.path``,
    ``finetune.init.path``, ``finetune.label_table`` and ``embed.model.path``. Values of the
    wrong type are left to the schema."""
    if not isinstance(body, dict):
        return
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and data["path"]:
        if data.get("source", "mock") == "mock":  # the mock is written there
            checked_path("data.path", data["path"], [settings.data_dir], "ASTROPT_DATA_DIR")
        else:
            checked_path("data.path", data["path"], settings.readable_roots)
    codec = body.get("codec")
    if isinstance(codec, str) and _names_a_directory(codec.strip()):
        try:
            checked_path("codec", codec.strip(), settings.readable_roots)
        except SpecInvalid as exc:
            raise SpecInvalid(
                "codec",
                f"{exc.detail}; a codec is 'default', 'shipped', a hub id like "
                "'polymathic-ai/aion-base', 'random:SEED' or a directory inside those "
                "roots",
            ) from exc
    for field in ("init_from", "finetune.init", "embed.model"):
        node = _dotted(body, field)
        if isinstance(node, dict) and isinstance(node.get("path"), str):
            checked_path(f"{field}.path", node["path"], settings.readable_roots)
    table = _dotted(body, "finetune.label_table")
    if isinstance(table, str) and table:
        checked_path("finetune.label_table", table, settings.readable_roots)


def _names_a_directory(codec: str) -> bool:
    """A codec spec that is neither a keyword, ``random:SEED``, ``hub:ID`` nor a hub id."""
    if not codec or codec in CODEC_WORDS or codec.startswith(("random:", "hub:")):
        return False
    return codec.startswith((".", "/", "~")) or not HUB_ID.match(codec)


def _dotted(body: dict[str, Any], dotted: str) -> Any:
    node: Any = body
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
