"""Run-directory files: listing, safe resolution of requested paths, checkpoint archives."""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from astropt.run_dir import RunDir, is_transient
from jobkinds.checkpoints import checkpoint_dir  # noqa: F401  (the routes' name for it)
from state.errors import NotFound

ArtifactKind = Literal["checkpoint", "val_image", "log", "other"]


def classify(relative: Path) -> ArtifactKind:
    top = relative.parts[0] if relative.parts else ""
    if top == "checkpoints":
        return "checkpoint"
    if top == "val_images":
        return "val_image"
    if relative.suffix in (".csv", ".png", ".yaml", ".json", ".log"):
        return "log"
    return "other"


def list_files(out_dir: Path) -> list[tuple[str, int, ArtifactKind]]:
    """Files under the run directory (relative path, size, kind); hidden and temporary ones skipped."""
    root = out_dir.resolve()
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(is_transient(part) for part in relative.parts):
            continue
        if run_file(path, root):
            found.append((relative.as_posix(), path.stat().st_size, classify(relative)))
    return found


def safe_file(out_dir: Path, relative: str) -> Path:
    """Resolve ``relative`` inside the run directory; anything that escapes it is not found, and
    so is anything the run did not write itself (:func:`run_file`), or a path the file system
    cannot even look up (a name too long)."""
    root = out_dir.resolve()
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        raise NotFound(f"no artifact {relative[:200]!r}")
    try:
        candidate = (root / relative).resolve()
        found = candidate.is_relative_to(root) and run_file(candidate, root)
    except (OSError, ValueError):
        found = False
    if not found:
        raise NotFound(f"no artifact {relative[:200]!r} in this job's run directory")
    return candidate


def run_file(path: Path, root: Path) -> bool:
    """A regular file with one link, owned by the owner of the run directory: a hard link (to
    /etc/passwd, say) planted in a run directory shares its inode with a file outside, so it is
    never listed, served or archived."""
    try:
        info = path.stat(follow_symlinks=False)
        return (
            stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and info.st_uid == root.stat().st_uid
        )
    except OSError:  # gone meanwhile (a rotated checkpoint), or a name too long to look up
        return False


def zip_checkpoint(directory: Path) -> Path:
    """A temporary zip of a checkpoint directory (stored, not compressed: weights do not shrink).

    Only regular files whose real path stays inside ``directory`` are archived: a symlink (to a
    file or a directory) never takes the archive out of the run directory.
    """
    root = directory.resolve()
    descriptor, name = tempfile.mkstemp(prefix=f"{directory.name}-", suffix=".zip")
    os.close(descriptor)
    with zipfile.ZipFile(name, "w", compression=zipfile.ZIP_STORED) as archive:
        for folder, subdirs, files in os.walk(root, followlinks=False):
            subdirs.sort()
            for file_name in sorted(files):
                path = Path(folder) / file_name
                if not run_file(path, root) or not path.resolve().is_relative_to(root):
                    continue
                archive.write(path, arcname=f"{directory.name}/{path.relative_to(root).as_posix()}")
    return Path(name)


def last_checkpoint_step(out_dir: Path) -> int | None:
    """Step of ``checkpoints/last`` (what a resume continues from), or None."""
    return RunDir(out_dir).last_step()
