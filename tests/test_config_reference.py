"""docs/config-reference.md is the output of scripts/config_reference.py (it cannot go stale)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from oltr.train.config import DEFAULTS, Config
from oltr.train.config._schema import field_types, is_section_type
from oltr.train.config.reference import markdown, rows

_ROOT = Path(__file__).resolve().parent.parent


def _leaf_keys(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and key != "options":
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_committed_reference_equals_the_generated_one():
    committed = (_ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == markdown(), "docs/config-reference.md is stale: run python3 scripts/config_reference.py"


def test_the_script_prints_the_same_table():
    out = subprocess.run([sys.executable, str(_ROOT / "scripts" / "config_reference.py"), "--output", "-"],
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout == markdown()


def test_every_key_has_one_row_with_its_type_default_and_meaning():
    table = rows()
    assert [key for key, *_ in table] == list(_leaf_keys(DEFAULTS))
    assert all(kind and default and doc.strip() for _, kind, default, doc in table)
    by_key = {key: (kind, default) for key, kind, default, _ in table}
    assert by_key["optim.gamma"] == ("float, in (0, 1]", "0.1")
    assert by_key["centroids.step_size"] == ("int or null, >= 1", "null")
    assert by_key["stage"] == ("plain | oltr | crt | lws", "plain")
    assert by_key["model.init"] == ("path or null", "null") and by_key["data.root"] == ("path", '""')
    assert "| `stage` | plain \\| oltr \\| crt \\| lws |" in markdown()


def test_every_field_and_section_has_a_meaning():
    def walk(cls):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc", "").strip(), f"{cls.__name__}.{f.name} has no doc"
            if is_section_type(field_types(cls)[f.name]):
                walk(field_types(cls)[f.name])
    walk(Config)


def test_the_readme_shows_the_same_reference():
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_reference", _ROOT / "scripts" / "config_reference.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = (_ROOT / "README.md").read_text(encoding="utf-8")
    assert script.with_readme_block(readme, markdown()) == readme, \
        "README's config reference is stale: run python3 scripts/config_reference.py"
