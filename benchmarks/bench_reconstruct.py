"""Benchmark ``POST /reconstruct`` against a real uvicorn server (not a test).

    python benchmarks/bench_reconstruct.py [--requests 40] [--clients 8] [--layers 4 --width 128]

Starts a server in a subprocess (standalone SQLite store, a completed job holding a random
AstroPT checkpoint of the given size trained on the shipped codec's tokens, or ``random:0``
when the shipped codec's weights are not installed), then reports for one 4x160x160 cube:

- sequential: p50/p99 latency and throughput (one client, one request at a time);
- concurrent: throughput and p50/p99 latency with ``--clients`` clients in parallel, and the
  batch sizes the engine ran.

Targets on 2 CPU cores: sequential p50 <= 150 ms; with 8 clients throughput >= 1.0x
sequential and p99 <= 10x the sequential p50.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np


def _codec_spec() -> str:
    from astropt.codec import SHIPPED_DIR, WEIGHTS_NAME

    return "shipped" if (SHIPPED_DIR / WEIGHTS_NAME).is_file() else "random:0"


def prepare(data_dir: Path, layers: int, width: int, codec_spec: str) -> str:
    """A completed job with a random checkpoint in a fresh standalone store; returns its id."""
    import torch

    from astropt.checkpoints import save_checkpoint
    from astropt.codec import load_codec
    from astropt.model import GPT, GPTConfig
    from state.settings import Settings
    from state.store import migrate, session_scope
    from state.store.models import utcnow
    from state.store.repository import create_job

    settings = Settings(data_dir=data_dir)
    settings.ensure_dirs()
    migrate(settings.resolved_database_url)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=layers, n_head=4, n_embd=width, block_size=1024))
    run_dir = settings.runs_dir / "bench"
    save_checkpoint(
        run_dir / "checkpoints" / "best",
        model,
        meta={"codec": load_codec(codec_spec).info.to_dict()},
    )
    job_id = uuid.uuid4().hex
    with session_scope(settings.resolved_database_url) as session:
        job = create_job(session, job_id, {"max_iters": 1}, str(run_dir))
        job.phase, job.finished_at = "completed", utcnow()
    return job_id


def serve(data_dir: Path, port: int) -> None:
    import uvicorn

    from service.app import create_app
    from state.settings import Settings

    app = create_app(
        Settings(data_dir=data_dir), publish=lambda job_id: None, check_broker=lambda: None
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _payload() -> bytes:
    rng = np.random.default_rng(0)
    cube = rng.gamma(1.0, 0.05, (4, 160, 160)).astype(np.float32)
    out = io.BytesIO()
    np.save(out, cube)
    return out.getvalue()


STAGES: dict[str, list[float]] = {}


def _post(client, payload: bytes) -> float:
    start = time.perf_counter()
    response = client.post("/reconstruct", files={"file": ("galaxy.npy", payload)})
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    for part in response.headers.get("Server-Timing", "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            STAGES.setdefault(name, []).append(float(duration))
    return elapsed


def _stage_medians() -> dict[str, float]:
    medians = {name: round(float(np.median(values)), 1) for name, values in STAGES.items()}
    STAGES.clear()
    return medians


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def run_sequential(base: str, payload: bytes, n: int) -> dict[str, float]:
    import httpx

    with httpx.Client(base_url=base, timeout=120.0) as client:
        start = time.perf_counter()
        latencies = [_post(client, payload) for _ in range(n)]
        wall = time.perf_counter() - start
    return {
        **_percentiles(latencies),
        "throughput_rps": n / wall,
        "server_ms_median": _stage_medians(),
    }


def run_concurrent(base: str, payload: bytes, n: int, clients: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    per_client = max(1, n // clients)

    def client_loop() -> None:
        with httpx.Client(base_url=base, timeout=120.0) as client:
            for _ in range(per_client):
                elapsed = _post(client, payload)
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        **_percentiles(latencies),
        "throughput_rps": len(latencies) / wall,
        "server_ms_median": _stage_medians(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40, help="requests per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return 0
    import httpx

    codec_spec = _codec_spec()
    with tempfile.TemporaryDirectory(prefix="astropt-bench-") as tmp:
        data_dir = Path(tmp)
        prepare(data_dir, args.layers, args.width, codec_spec)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env["HF_HUB_OFFLINE"] = "1"
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(data_dir), str(port)], env=env
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/health", timeout=1.0)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            payload = _payload()
            run_sequential(base, payload, 5)  # warm-up: model load, first-call allocations
            _stage_medians()
            sequential = run_sequential(base, payload, args.requests)
            concurrent = run_concurrent(base, payload, args.requests, args.clients)
            stats = httpx.get(f"{base}/inference/stats").json()
        finally:
            server.terminate()
            server.wait(10)
    report = {
        "codec": codec_spec,
        "model": f"{args.layers} layers x {args.width} wide",
        "cube": "4x160x160",
        "cpus": len(os.sched_getaffinity(0)),
        "engine": stats,
        "sequential": sequential,
        f"concurrent_{args.clients}_clients": concurrent,
        "checks": {
            "p50_le_150ms": sequential["p50_ms"] <= 150.0,
            "throughput_ratio": concurrent["throughput_rps"] / sequential["throughput_rps"],
            "p99_over_p50": concurrent["p99_ms"] / sequential["p50_ms"],
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
