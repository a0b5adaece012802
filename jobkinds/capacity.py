"""Can any worker run a job's resources? 422 when none ever could; a waiting reason when none is free now."""

from __future__ import annotations

from sqlalchemy.orm import Session

from jobkinds.spec import Resources
from state.errors import SpecInvalid
from state.settings import Settings
from state.store import workers


def check(
    session: Session, settings: Settings, resources: Resources, device: str = "auto"
) -> str | None:
    """Raise :class:`SpecInvalid` if the job can never run here; else why it must wait (or None).

    ``device`` 'cuda' needs a worker that advertises CUDA devices."""
    procs, nodes = resources.procs_per_node, resources.nodes
    if settings.executor == "slurm":
        if nodes > settings.slurm_max_nodes:
            raise SpecInvalid(
                "resources.nodes",
                f"{nodes} nodes asked; this Slurm cluster allows at "
                f"most {settings.slurm_max_nodes} (ASTROPT_SLURM_MAX_NODES)",
            )
        if procs > settings.slurm_procs_per_node:
            raise SpecInvalid(
                "resources.procs_per_node",
                f"{procs} processes per node asked; a node "
                f"of this Slurm cluster offers {settings.slurm_procs_per_node} "
                "(ASTROPT_SLURM_PROCS_PER_NODE)",
            )
        return None
    if nodes > 1:
        raise SpecInvalid(
            "resources.nodes",
            f"{nodes} nodes asked; the celery executor runs a job on "
            "one node: use procs_per_node, or a service with ASTROPT_EXECUTOR=slurm",
        )
    online = workers.online(session, settings.worker_lease_seconds)
    if not online:
        return f"waiting for a worker with {procs} device(s): no worker is online"
    if device == "cuda" or device.startswith("cuda:"):
        gpus = [w for w in online if w.device_kind == "cuda"]
        if not gpus:
            kinds = sorted({f"{w.devices} {w.device_kind}" for w in online})
            raise SpecInvalid(
                "device",
                f"device '{device}' asks for a GPU; no online worker has one "
                f"(they offer {', '.join(kinds)} device(s)): use device 'auto' or 'cpu'",
            )
        online = gpus
    largest = max(online, key=lambda w: w.devices)
    if largest.devices < procs:
        raise SpecInvalid(
            "resources.procs_per_node",
            f"{procs} processes asked; the largest online "
            f"worker ({largest.name}) has {largest.devices} {largest.device_kind} "
            f"device(s), so no worker could run it",
        )
    if not any(worker.free_devices >= procs for worker in online):
        return f"waiting for a worker with {procs} free device(s): all are busy"
    return None
