"""The code's layering, read from its source: no import cycle, and the folder boundaries
(astropt <- broker <- service/worker; see docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import ImportEdge, find_cycle, import_edges

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["astropt", "broker", "service", "worker"]


@pytest.fixture(scope="module")
def edges() -> list[ImportEdge]:
    return import_edges(ROOT, PACKAGES)


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def test_no_import_cycle(edges):
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checker_finds_a_cycle_added_to_a_package(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("import os\n\ndef later():\n    from pkg.c import thing\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    assert find_cycle(import_edges(tmp_path, ["pkg"])) is None  # type-checking imports do not count
    (package / "c.py").write_text("import pkg.a\nthing = 1\n")
    assert find_cycle(import_edges(tmp_path, ["pkg"])) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_the_graph_sees_the_real_imports(edges):
    pairs = {(e.source, e.target) for e in edges}
    assert ("service.inference.engine", "astropt.inference.runtime") in pairs
    assert ("worker.inference", "broker") in pairs
    assert ("service.cli", "worker.tasks") in pairs  # a lazy import inside a function


def test_astropt_imports_neither_the_service_nor_the_workers(edges):
    wrong = [e for e in edges if _top(e.source) in ("astropt", "broker")
             and _top(e.target) in ("service", "worker")]
    assert not wrong, wrong


def test_the_broker_imports_nothing_of_the_project_but_itself(edges):
    wrong = [e for e in edges if _top(e.source) == "broker" and _top(e.target) != "broker"]
    assert not wrong, wrong


def test_service_imports_the_worker_only_to_start_one_from_its_cli(edges):
    wrong = [e for e in edges if _top(e.source) == "service" and _top(e.target) == "worker"
             and e.source != "service.cli"]
    assert not wrong, wrong


def test_the_worker_imports_only_settings_and_the_store_from_the_service(edges):
    allowed = ("service.settings", "service.store")
    wrong = [e for e in edges if _top(e.source) == "worker" and _top(e.target) == "service"
             and not any(e.target == a or e.target.startswith(a + ".") for a in allowed)]
    assert not wrong, wrong
