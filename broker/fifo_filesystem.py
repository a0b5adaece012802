"""The standalone broker: kombu's filesystem transport, first-in first-out.

kombu names a message file ``<monotonic ms>_<uuid>.<queue>.msg`` and takes the smallest name
as text: ``999_...`` sorts after ``1000_...`` and messages of one millisecond come in random
(uuid) order, so after some uptime newer jobs run before older ones. Here the name starts with
the wall-clock time in nanoseconds, zero-padded to a fixed width, then this process's id and a
per-process counter, so names sort as text in publish order (across processes to the
nanosecond, within a process exactly); names of the old form are read first.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from typing import Any

from kombu.transport import filesystem

TRANSPORT = "broker.fifo_filesystem:Transport"
_WIDTH = 20  # digits of time.time_ns() until the year 5138
_counter = itertools.count()
_lock = threading.Lock()


def message_name(queue: str) -> str:
    """A file name that sorts (as text) after every name made before it on this machine."""
    with _lock:
        stamp, serial = time.time_ns(), next(_counter)
    return f"{stamp:0{_WIDTH}d}_{os.getpid():010d}_{serial:012d}_{uuid.uuid4().hex}.{queue}.msg"


def order_key(name: str) -> tuple[int, str]:
    """Old kombu names (unpadded milliseconds) first, by their number; then ours, as text."""
    prefix = name.partition("_")[0]
    if len(prefix) != _WIDTH and prefix.isdigit():
        return 0, f"{int(prefix):0{_WIDTH}d}"
    return 1, name


class Channel(filesystem.Channel):
    # kombu's own classes disagree on the parameter's name (message / payload); both call it
    # positionally
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        path = os.path.join(self.data_folder_out, message_name(queue))
        staging = os.path.join(self.data_folder_out, f".{os.path.basename(path)}.part")
        try:  # written under a hidden name, then renamed: a reader never sees half a message
            with open(staging, "wb", buffering=0) as handle:
                handle.write(filesystem.str_to_bytes(filesystem.dumps(payload)))
            os.replace(staging, path)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {path!r} to directory") from exc

    def _get(
        self, queue: str, timeout: float | None = None
    ) -> Any:  # timeout: the base's; never waits
        wanted = f"{queue}.msg"
        names = sorted(
            (n for n in os.listdir(self.data_folder_in) if n.partition(".")[2] == wanted),
            key=order_key,
        )
        for name in names:
            taken = self._take(name)
            if taken is not None:
                return filesystem.loads(filesystem.bytes_to_str(taken))
        raise filesystem.Empty()

    def _take(self, name: str) -> bytes | None:
        """Move one message out of the queue folder and read it; None if another reader won."""
        target = self.processed_folder if self.store_processed else self.data_folder_in
        moved = os.path.join(target, f".taken-{uuid.uuid4().hex}-{name}")
        try:
            os.rename(os.path.join(self.data_folder_in, name), moved)
        except OSError:
            return None
        try:
            with open(moved, "rb") as handle:
                return handle.read()
        finally:
            if not self.store_processed:
                os.remove(moved)


class Transport(filesystem.Transport):
    Channel = Channel
