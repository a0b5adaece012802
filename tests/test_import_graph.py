"""The code's layering, read from its source: no import cycle, and the folder boundaries
(astropt <- broker, state <- jobkinds <- service/worker; see docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import ImportEdge, all_cycles, find_cycle, import_edges, package_edges

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["astropt", "broker", "state", "jobkinds", "service", "worker"]
# Package-level cycles allowed: none (the last, finetune/inference/science/training, was broken
# by astropt.serving above finetune and astropt.sequences below inference and training).
KNOWN_PACKAGE_CYCLES: list[list[str]] = []


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
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    assert find_cycle(import_edges(tmp_path, ["pkg"])) is None  # type-checking imports do not count
    (package / "c.py").write_text("import pkg.a\nthing = 1\n")
    assert find_cycle(import_edges(tmp_path, ["pkg"])) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_the_graph_sees_the_real_imports(edges):
    pairs = {(e.source, e.target) for e in edges}
    assert ("service.inference.engine", "astropt.serving.runtime") in pairs
    assert ("worker.inference", "broker") in pairs
    assert ("service.cli", "worker.tasks") in pairs  # a lazy import inside a function


def test_astropt_imports_neither_the_service_nor_the_workers(edges):
    wrong = [
        e
        for e in edges
        if _top(e.source) in ("astropt", "broker") and _top(e.target) in ("service", "worker")
    ]
    assert not wrong, wrong


def test_the_broker_imports_nothing_of_the_project_but_itself(edges):
    wrong = [e for e in edges if _top(e.source) == "broker" and _top(e.target) != "broker"]
    assert not wrong, wrong


def test_service_imports_the_worker_only_to_start_one_from_its_cli(edges):
    wrong = [
        e
        for e in edges
        if _top(e.source) == "service" and _top(e.target) == "worker" and e.source != "service.cli"
    ]
    assert not wrong, wrong


def test_the_worker_imports_nothing_of_the_service(edges):
    wrong = [e for e in edges if _top(e.source) == "worker" and _top(e.target) == "service"]
    assert not wrong, wrong


def test_the_shared_packages_import_neither_the_service_nor_the_workers(edges):
    wrong = [
        e
        for e in edges
        if _top(e.source) in ("state", "jobkinds") and _top(e.target) in ("service", "worker")
    ]
    assert not wrong, wrong


def test_no_package_level_cycle_beyond_the_known_one(edges):
    cycles = all_cycles(package_edges(edges))
    top_level = all_cycles(
        package_edges(
            [
                ImportEdge(_top(e.source), _top(e.target), e.line)
                for e in edges
                if _top(e.source) != _top(e.target)
            ]
        )
    )
    assert top_level == [], top_level  # service <-> worker, or anything through state
    assert cycles == KNOWN_PACKAGE_CYCLES, cycles


def test_the_package_check_catches_a_package_cycle(tmp_path):
    for package in ("pkg", "pkg/a", "pkg/b"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "pkg/a/one.py").write_text("from pkg.b import two\n")
    (tmp_path / "pkg/b/two.py").write_text("import os\n")
    (tmp_path / "pkg/b/three.py").write_text("from pkg.a.one import x\n")
    edges = import_edges(tmp_path, ["pkg"])
    assert find_cycle(edges) is None  # no module-level cycle: one -> two, three -> one
    assert all_cycles(package_edges(edges)) == [["pkg.a", "pkg.b"]]
