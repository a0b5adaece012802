"""Workers' advertised capacity (how many processes one job may use on them), kept with their heartbeat."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from state.store.models import WorkerNode, utcnow

# Workers advertise once per lease period; one missed beat is not yet "offline".
LIVE_LEASES = 2.5


def advertise(
    session: Session, name: str, hostname: str, device_kind: str, devices: int, free_devices: int
) -> None:
    node = session.get(WorkerNode, name)
    if node is None:
        node = WorkerNode(name=name)
        session.add(node)
    node.hostname, node.device_kind = hostname, device_kind
    node.devices, node.free_devices, node.heartbeat_at = devices, free_devices, utcnow()


def live(session: Session, within_seconds: float) -> Sequence[WorkerNode]:
    """Workers heard from within ``within_seconds``, largest first."""
    since = utcnow() - timedelta(seconds=within_seconds)
    query = select(WorkerNode).where(WorkerNode.heartbeat_at >= since)
    return session.scalars(query.order_by(WorkerNode.devices.desc(), WorkerNode.name)).all()


def online(session: Session, lease_seconds: float) -> Sequence[WorkerNode]:
    """Workers that count as online: heard from within :data:`LIVE_LEASES` lease periods."""
    return live(session, LIVE_LEASES * lease_seconds)


def forget(session: Session, name: str) -> None:
    session.execute(delete(WorkerNode).where(WorkerNode.name == name))
