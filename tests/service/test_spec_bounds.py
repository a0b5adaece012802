"""Every number a job spec carries is bounded, and no non-finite number gets in, over real
uvicorn + Redis on SQLite and on PostgreSQL: a 422 that names the field, the limit and the
setting, never a 500, and nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from state.settings import Settings
from tests.service.stack import (
    API_KEY,
    ThreadedServer,
    postgres_schema,
    redis_url,
    tiny_spec,
    unique_queue,
)
from tests.service.test_api import forget_queue

# (dotted field, value just past the default limit, text the message must hold)
BOUNDS: list[tuple[str, Any, str]] = [
    ("max_iters", 1_000_001, "1e+06 (setting ASTROPT_MAX_ITERS_LIMIT)"),
    ("batch_size", 1025, "1024 (setting ASTROPT_MAX_BATCH_SIZE)"),
    ("batch_size", 1_000_000, "1024 (setting ASTROPT_MAX_BATCH_SIZE)"),
    ("grad_accum", 1025, "1024 (setting ASTROPT_MAX_GRAD_ACCUM)"),
    ("data.n_mock", 100_001, "100000 (setting ASTROPT_MAX_N_MOCK)"),
    ("eval_iters", 1001, "1000 (setting ASTROPT_MAX_EVAL_ITERS)"),
    ("num_threads", 257, "256 (setting ASTROPT_MAX_NUM_THREADS)"),
    ("eval_interval", 1_000_001, "(setting ASTROPT_MAX_ITERS_LIMIT)"),
    ("log_interval", 1_000_001, "(setting ASTROPT_MAX_ITERS_LIMIT)"),
    ("checkpoint_interval", 1_000_001, "(setting ASTROPT_MAX_ITERS_LIMIT)"),
    ("optim.warmup_iters", 1_000_001, "(setting ASTROPT_MAX_ITERS_LIMIT)"),
    ("optim.lr_decay_iters", 1_000_001, "(setting ASTROPT_MAX_ITERS_LIMIT)"),
    ("optim.learning_rate", 10.5, "limit of 10 (setting ASTROPT_MAX_LEARNING_RATE)"),
    ("optim.min_lr", 10.5, "limit of 10 (setting ASTROPT_MAX_LEARNING_RATE)"),
    ("optim.weight_decay", 10.5, "limit of 10 (setting ASTROPT_MAX_WEIGHT_DECAY)"),
    ("optim.grad_clip", 2e6, "limit of 1e+06 (setting ASTROPT_MAX_GRAD_CLIP)"),
    ("model.block_size", 8193, "limit of 8192 (setting ASTROPT_MAX_BLOCK_SIZE)"),
    ("data.shuffle_buffer", 1_000_001, "(setting ASTROPT_MAX_SHUFFLE_BUFFER)"),
    ("live_probe.n_galaxies", 4097, "limit of 4096 (setting ASTROPT_MAX_LIVE_PROBE_GALAXIES)"),
    ("live_probe.every", 1_000_001, "(setting ASTROPT_MAX_ITERS_LIMIT)"),
    # bounded by the schema itself: facts of the model and the data, not policy
    ("model.n_layer", 97, "less than or equal to 96"),
    ("model.n_head", 129, "less than or equal to 128"),
    ("model.n_embd", 16392, "less than or equal to 16384"),
    ("model.dropout", 1.0, "less than 1"),
    ("model.patch_size", 97, "less than or equal to 96"),
    ("model.mae_mask_ratio", 1.0, "less than 1"),
    ("optim.beta1", 1.0, "less than 1"),
    ("optim.beta2", 1.0, "less than 1"),
    ("data.val_fraction", 0.5, "less than 0.5"),
    ("n_val_images", 17, "less than or equal to 16"),
    ("live_probe.folds", 11, "less than or equal to 10"),
    ("live_probe.n_galaxies", 9, "greater than or equal to 10"),
    ("live_probe.alpha", 1e9, "less than or equal to 100000000"),
    ("seed", 2**32, "less than or equal to 4294967295"),
    ("seed", 2**70, "less than or equal to 4294967295"),
    ("data.mock_seed", 2**32, "less than or equal to 4294967295"),
    ("resources.nodes", 4097, "less than or equal to 4096"),
    ("resources.nodes", 2, "one node"),
    ("resources.procs_per_node", 1025, "less than or equal to 1024"),
    ("resources.time_minutes", 43201, "less than or equal to 43200"),
]
# Within each field's own limit, but too much together.
COMBINED: list[tuple[dict[str, Any], str, str]] = [
    ({"batch_size": 64, "grad_accum": 1000}, "batch_size", "(setting ASTROPT_MAX_TOKENS_PER_STEP)"),
    (
        {"model": {"n_layer": 96, "n_head": 128, "n_embd": 16384}},
        "model",
        "(setting ASTROPT_MAX_MODEL_PARAMS)",
    ),
    # a micro-batch of 1024 images needs ~124 GiB (logits of 10,000 codes per token dominate)
    (
        {"batch_size": 1024},
        "batch_size",
        "memory budget is 32.0 GiB (setting ASTROPT_MAX_TRAIN_MEMORY_MB)",
    ),
]
NON_FINITE_LITERALS = [
    "Infinity",
    "-Infinity",
    "NaN",
    "1e999",
    "-1e999",
    '"Infinity"',
    '"NaN"',
    '"inf"',
    '"-inf"',
]
NON_FINITE_FIELDS = [
    "optim.learning_rate",
    "model.dropout",
    "data.val_fraction",
    "optim.grad_clip",
    "batch_size",
    "resources.nodes",
    "seed",
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedServer]:
    data = tmp_path_factory.mktemp(f"bounds-{request.param}")
    if request.param == "sqlite":
        yield from _serve(data, f"sqlite:///{data / 'jobs.db'}")
        return
    with postgres_schema() as url:
        yield from _serve(data, url)


def _serve(data: Path, database_url: str) -> Iterator[ThreadedServer]:
    settings = Settings(
        data_dir=data,
        database_url=database_url,
        broker_url=redis_url(),
        train_queue=unique_queue(),
        api_key=API_KEY,
    )
    with ThreadedServer(create_app(settings)) as running:
        yield running
    forget_queue(settings)


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        yield c


def with_field(dotted: str, value: Any) -> dict[str, Any]:
    spec = tiny_spec()
    *sections, name = dotted.split(".")
    node = spec
    for section in sections:
        node = node.setdefault(section, {})
    node[name] = value
    return spec


def strict_json(response: httpx.Response) -> Any:
    """The body as JSON, refusing NaN/Infinity (what browsers and most clients do)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"response holds {constant}: {response.text[:300]}")

    return json.loads(response.text, parse_constant=refuse)


def refused(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 422, (response.status_code, response.text[:500])
    issue = strict_json(response)["detail"][0]
    return issue["field"], issue["msg"]


def job_count(client: httpx.Client) -> int:
    return int(strict_json(client.get("/jobs"))["total"])


@pytest.mark.parametrize(
    ("field", "value", "expected"), BOUNDS, ids=[f"{f}={v}" for f, v, _ in BOUNDS]
)
def test_each_bounded_field_is_refused_past_its_limit(
    client: httpx.Client, field: str, value: Any, expected: str
) -> None:
    before = job_count(client)
    got_field, message = refused(client.post("/jobs", json=with_field(field, value)))
    assert got_field == field and expected in message, message
    assert job_count(client) == before  # refused up front: nothing stored, nothing queued


@pytest.mark.parametrize(
    ("overrides", "field", "expected"), COMBINED, ids=["tokens", "params", "memory"]
)
def test_combinations_past_a_budget_are_refused(
    client: httpx.Client, overrides: dict[str, Any], field: str, expected: str
) -> None:
    before = job_count(client)
    got_field, message = refused(client.post("/jobs", json=tiny_spec(**overrides)))
    assert got_field == field and expected in message, message
    assert job_count(client) == before


def test_a_job_at_the_limits_is_accepted(client: httpx.Client) -> None:
    """The bounds are not so tight that a reasonable job fails them (the table is not vacuous)."""
    spec = tiny_spec(
        batch_size=64,
        grad_accum=16,
        optim={"learning_rate": 10.0, "weight_decay": 10.0},
        eval_iters=1000,
        num_threads=256,
        seed=2**32 - 1,
    )
    response = client.post("/jobs", json=spec)
    assert response.status_code == 201, response.text
    assert strict_json(response)["max_attempts"] == 3


@pytest.mark.parametrize("field", NON_FINITE_FIELDS)
@pytest.mark.parametrize("literal", NON_FINITE_LITERALS)
def test_non_finite_numbers_are_refused_anywhere(
    client: httpx.Client, field: str, literal: str
) -> None:
    before = job_count(client)
    marker = "__VALUE__"
    body = json.dumps(with_field(field, marker)).replace(f'"{marker}"', literal)
    response = client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    got_field, _ = refused(response)
    assert got_field in (field, "body"), (
        got_field
    )  # a parse error names the body, a schema error the field
    assert job_count(client) == before


@pytest.mark.parametrize("literal", ["Infinity", "NaN", "1e999", '"Infinity"'])
def test_non_finite_numbers_in_resume_and_queries(client: httpx.Client, literal: str) -> None:
    job_id = strict_json(client.post("/jobs", json=tiny_spec()))["id"]
    client.post(f"/jobs/{job_id}/cancel")
    response = client.post(
        f"/jobs/{job_id}/resume",
        content=f'{{"max_iters": {literal}}}',
        headers={"Content-Type": "application/json"},
    )
    refused(response)
    for query in ("since", "offset", "limit"):
        path = f"/jobs/{job_id}" if query == "since" else "/jobs"
        answer = client.get(path, params={query: literal.strip('"')})
        assert answer.status_code == 422, (query, answer.text)
    assert client.get(f"/jobs/{job_id}", params={"since": 2**40}).status_code == 200  # 64-bit steps
    assert client.get(f"/jobs/{job_id}", params={"since": 2**63}).status_code == 422
