"""A multi-process job on one node: a torchrun process group owned by the Celery task.

torchrun (torch.distributed.run, ``--standalone``: c10d rendezvous on a free local port)
starts one rank per leased device; gloo on CPU, NCCL on GPUs (chosen by the training
runtime). The group dies with its owner: torchrun gets PR_SET_PDEATHSIG from this process,
each rank from torchrun. A rank that dies takes the group down (torchrun stops the others);
this task then starts a fresh group (a new rendezvous), up to ``distributed_max_restarts``
times, which resumes from ``checkpoints/last``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from state.settings import Settings
from state.store import repository, session_scope
from worker.launch.devices import DeviceLease
from worker.launch.group_result import RESULT_FILE
from worker.launch.lifeline import die_with_parent
from worker.outcome import final_phase

log = logging.getLogger(__name__)
STOP_GRACE_SECONDS = 60


def torchrun_command(job_id: str, owner: str, procs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={procs}",
        "--max-restarts=0",
        "--monitor-interval=1",
        "-m",
        "worker.launch.rank",
        job_id,
        owner,
    ]


def train_group(
    settings: Settings, job_id: str, owner: str, out_dir: str, lease: DeviceLease
) -> str:
    """Run the job's ranks to the end; returns completed | cancelled | failed | lost."""
    url = settings.resolved_database_url
    run = Path(out_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / RESULT_FILE).unlink(missing_ok=True)
    procs = len(lease.ids)
    env = {
        **os.environ,
        **lease.env(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "PYTHONUNBUFFERED": "1",
    }
    with session_scope(url) as session:
        job = repository.get_job(session, job_id)
        resources = dict(job.resources or {}) if job else {}
        resources.update(world_size=procs, devices=lease.ids, device_kind=lease.kind)
        repository.update_job(session, job_id, resources=resources, waiting_reason=None)
    command = torchrun_command(job_id, owner, procs)
    for restart in range(settings.distributed_max_restarts + 1):
        env["ASTROPT_GROUP_RESTARTS"] = str(restart)
        with open(run / "torchrun.log", "ab") as output:  # the caller keeps the job's lease fresh
            process = subprocess.Popen(
                command,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            try:
                returncode = process.wait()
            finally:
                stop_group(process)
        if returncode == 0 or _cancel_requested(url, job_id):
            break
        if restart == settings.distributed_max_restarts:
            log.error(
                "job %s: process group exited with %d after its last allowed start",
                job_id,
                returncode,
            )
        else:
            log.warning(
                "job %s: process group exited with %d; starting it again from its last checkpoint",
                job_id,
                returncode,
            )
    return _finish(url, job_id, run, returncode)


def _cancel_requested(url: str, job_id: str) -> bool:
    with session_scope(url) as session:
        return repository.is_cancel_requested(session, job_id)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (ranks checkpoint and leave), then SIGKILL whatever is left of the group."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _finish(url: str, job_id: str, run: Path, returncode: int) -> str:
    result_path = run / RESULT_FILE
    with session_scope(url) as session:
        if returncode != 0 or not result_path.is_file():
            log_text = _tail(run / "torchrun.log", 200_000)
            cause = first_cause(log_text)
            head = f"{cause}\n" if cause else ""
            reason = (
                f"{head}process group exited with code {returncode} after its restarts; "
                f"the end of torchrun.log:\n{log_text[-2500:]}"
            )
            repository.finish_job(session, job_id, "failed", reason[:4000])
            return "failed"
        result = json.loads(result_path.read_text())
        if result["lost_ownership"]:
            return "lost"
        phase = final_phase(result["status"])
        repository.update_job(session, job_id, iteration=int(result["step"]))
        repository.finish_job(session, job_id, phase, result.get("reason"))
        return phase


def first_cause(log_text: str) -> str | None:
    """The first exception a rank raised (``Name: message``), so a failed job leads with it
    rather than with pages of torchrun's own report."""
    for line in log_text.splitlines():
        text = line.split("]:", 1)[-1].strip()  # torchrun prefixes rank output with [rankN]:
        name = text.split(":", 1)[0]
        if (
            ":" in text
            and name.endswith(("Error", "Exception"))
            and " " not in name
            and name != "ChildFailedError"
        ):
            return text[:500]
    return None


def _tail(path: Path, chars: int = 2500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
