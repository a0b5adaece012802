"""This worker's devices (GPUs, or CPU process slots) and exclusive leases on them.

A lease is an ``fcntl`` lock on one file per device, so several worker processes on a node
(``--concurrency N``, or one worker per GPU) never hand the same device to two jobs, and a
killed process releases its devices with its file descriptors. No torch import here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DeviceKind = Literal["cuda", "cpu"]


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES, else what ``nvidia-smi -L`` lists."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


@dataclass
class DevicePool:
    kind: DeviceKind
    ids: list[str]
    lock_dir: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / f"astropt-devices-{os.getuid()}"
    )

    @classmethod
    def detect(cls, configured: int = 0, lock_dir: Path | None = None) -> DevicePool:
        """The devices this process sees; their locks in ``lock_dir`` (the workers of one service
        share them: :func:`worker.launch.placement.device_pool` puts them in its data directory)."""
        gpus = visible_gpus()
        ids = (
            (gpus[:configured] if configured else gpus)
            if gpus
            else [str(i) for i in range(configured or os.cpu_count() or 1)]
        )
        pool = cls("cuda" if gpus else "cpu", ids)
        if lock_dir is not None:
            pool.lock_dir = lock_dir
        return pool

    def __len__(self) -> int:
        return len(self.ids)

    def _path(self, device: str) -> Path:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        return self.lock_dir / f"{self.kind}-{device}.lock"

    def free(self) -> int:
        count = 0
        for device in self.ids:
            with open(self._path(device), "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                fcntl.flock(fh, fcntl.LOCK_UN)
                count += 1
        return count

    def acquire(self, n: int) -> DeviceLease | None:
        """Lock ``n`` free devices, or none at all (None) when fewer are free."""
        held: list[tuple[str, int]] = []
        for device in self.ids:
            if len(held) == n:
                break
            fd = os.open(self._path(device), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append((device, fd))
        lease = DeviceLease(self.kind, held)
        if len(held) < n:
            lease.release()
            return None
        return lease


@dataclass
class DeviceLease:
    kind: DeviceKind
    held: list[tuple[str, int]]

    @property
    def ids(self) -> list[str]:
        return [device for device, _ in self.held]

    def env(self) -> dict[str, str]:
        """What the job's processes need to see only their devices."""
        if self.kind == "cuda":
            return {"CUDA_VISIBLE_DEVICES": ",".join(self.ids)}
        return {}

    def release(self) -> None:
        for _, fd in self.held:
            os.close(fd)  # closing the descriptor drops its lock
        self.held = []

    def __enter__(self) -> DeviceLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
