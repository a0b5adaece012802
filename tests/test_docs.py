"""Generated documentation stays in sync with the code."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_training_config_reference_is_up_to_date():
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "training-config.md").read_text()
    assert committed == module.render(), (
        "run: python scripts/config_reference.py > docs/training-config.md"
    )
