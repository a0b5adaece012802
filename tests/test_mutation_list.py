"""scripts/mutation_test.py stays applicable: each named mutation still matches the code
exactly once and names tests that exist (the mutation run itself is a separate CI step)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "mutation_test", REPO / "scripts" / "mutation_test.py"
)
mutation_test = importlib.util.module_from_spec(spec)
sys.modules["mutation_test"] = mutation_test  # dataclasses look their module up
spec.loader.exec_module(mutation_test)


@pytest.mark.parametrize("mutation", mutation_test.MUTATIONS, ids=lambda m: m.name)
def test_mutation_applies_once_and_names_real_tests(mutation) -> None:
    source = (REPO / mutation.file).read_text()
    assert source.count(mutation.old) == 1, (
        f"{mutation.name}: update the snippet in scripts/mutation_test.py"
    )
    assert mutation.old != mutation.new
    for test in mutation.tests:
        path, _, name = test.partition("::")
        assert (REPO / path).is_file(), test
        if name:
            assert f"def {name.split('[')[0]}(" in (REPO / path).read_text(), test


def test_mutation_names_are_unique() -> None:
    names = [m.name for m in mutation_test.MUTATIONS]
    assert len(names) == len(set(names))


def test_the_ci_set_names_real_mutations() -> None:
    names = {m.name for m in mutation_test.MUTATIONS}
    assert names >= mutation_test.CI_SET, sorted(mutation_test.CI_SET - names)
