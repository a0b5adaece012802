"""``astropt serve --demo``: the demo job, and what the start-up output says about it.

The output leads with where to look (dashboard, API docs) and what the demo does (data, model,
steps, the time it takes), before any log line of uvicorn or the worker.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

from state.settings import Settings

# Measured with benchmarks/bench_demo.py (docs/quickstart.md quotes the figures).
EXPECTED_TIME = "about 1.5 minutes on 2 free CPU cores (88 s measured; longer on a busy machine)"


def link_host(host: str) -> str:
    """The host a browser on this machine reaches a server bound to ``host`` at."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def describe(spec: dict[str, Any]) -> str:
    """One sentence on a training job spec: model, start, steps and data."""
    model = spec.get("model") or {}
    shape = (
        f"{model.get('n_layer', '?')}-layer, {model.get('n_embd', '?')}-wide"
        if model
        else "shipped-shape"
    )
    start = (
        "from random weights" if not spec.get("init_from") else f"from {spec['init_from']} weights"
    )
    data = spec.get("data") or {}
    batch = spec.get("batch_size", "?")
    return (
        f"a {shape} AstroPT trained {start} for {spec.get('max_iters', '?')} steps of {batch} galaxies, "
        f"on {data.get('n_mock', '?')} GalSim mock galaxies tokenised by the {spec.get('codec', 'shipped')} codec "
        f"({100 * data.get('val_fraction', 0.05):g} % held out for validation)"
    )


def submit(app: Any, settings: Settings) -> str:
    """Queue the demo job; its id."""
    from service.jobs import service as jobs
    from service.jobs.schemas import DEMO_JOB, JobSpec
    from state.store import session_scope

    with session_scope(settings.resolved_database_url) as session:
        job = jobs.submit(session, settings, app.state.publish, JobSpec.model_validate(DEMO_JOB))
        return str(job.id)


def start_up_text(host: str, port: int, data_dir: Path, demo_job_id: str | None) -> str:
    """What ``astropt serve`` prints first."""
    base = f"http://{link_host(host)}:{port}"
    lines = [
        f"AstroPT service (API + one training worker; jobs, models and the SQLite store in {data_dir})",
        f"  dashboard   {base}/ui",
        f"  API docs    {base}/docs",
    ]
    if demo_job_id is not None:
        from service.jobs.schemas import DEMO_JOB

        what = describe(DEMO_JOB)
        plan = (
            f"{what[:1].upper()}{what[1:]}. Its validation loss falls from ln(10000) = 9.2 nats to about 0.8 (the "
            f"shipped model, trained 8 times longer: 0.63); every {DEMO_JOB.get('eval_interval')} steps the job "
            "page adds a picture of validation galaxies, the codec's version beside the model's prediction. "
            f"Expected time: {EXPECTED_TIME}."
        )
        lines += [
            "",
            f"Demo job {demo_job_id}:",
            textwrap.fill(plan, width=100, initial_indent="  ", subsequent_indent="  "),
            f"  watch it        {base}/ui/jobs/{demo_job_id}",
            f"  then use it     {base}/ui/reconstruct?job_id={demo_job_id}  (or POST /reconstruct with job_id)",
        ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lines += [
            "",
            "Note: running as root, and so is the worker; on a shared machine run as an ordinary user.",
        ]
    lines.append("")
    return "\n".join(lines)
