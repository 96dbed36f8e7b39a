"""scripts/check_readme_demo.py: the README's demo table of this CPU against a run's table.md."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from oltr._platform import cpu_info

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_readme_demo.py"
TABLE = "| model | top-1 |\n|---|---|\n| plain | 68.6 ± 0.5 |\n| OLTR | 75.5 ± 1.2 |\n"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("check_readme_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _readme(tmp_path: Path, blocks: dict[str, str]) -> Path:
    text = "# x\n\n" + "".join(f"<!-- demo-table: {k} -->\n{v}<!-- /demo-table -->\n\n" for k, v in blocks.items())
    path = tmp_path / "README.md"
    path.write_text(text + "after\n")
    return path


def _run(check, tmp_path, readme, table=TABLE, update=False):
    (tmp_path / "table.md").write_text("Fashion-MNIST-LT, 3 seeds\n\n" + table + "\n(%)\n")
    args = ["--table", str(tmp_path / "table.md"), "--readme", str(readme)]
    return check(args + (["--update"] if update else []))


def test_equal_table_of_this_cpu_passes_and_other_cpus_are_ignored(check, tmp_path):
    readme = _readme(tmp_path, {"Other CPU | family 6 | model 106": "| model |\n|---|\n| x |\n", cpu_info().key: TABLE})
    assert _run(check, tmp_path, readme) == 0


def test_a_changed_figure_fails(check, tmp_path, capsys):
    readme = _readme(tmp_path, {cpu_info().key: TABLE.replace("75.5", "75.4")})
    assert _run(check, tmp_path, readme) == 1
    assert "75.4" in capsys.readouterr().out


def test_no_table_for_this_cpu_is_reported_then_added_by_update(check, tmp_path):
    other = {"Other CPU | family 6 | model 106": "| model |\n|---|\n| x |\n"}
    readme = _readme(tmp_path, other)
    assert _run(check, tmp_path, readme) == 2
    assert _run(check, tmp_path, readme, update=True) == 0
    assert _run(check, tmp_path, readme) == 0
    assert "| x |" in readme.read_text() and readme.read_text().endswith("after\n")


def test_update_rewrites_only_this_cpus_block(check, tmp_path):
    other = "| model |\n|---|\n| x |\n"
    blocks = {"Other CPU | family 6 | model 106": other, cpu_info().key: TABLE.replace("75.5", "1.0")}
    readme = _readme(tmp_path, blocks)
    assert _run(check, tmp_path, readme, update=True) == 0
    text = readme.read_text()
    assert "75.5" in text and "1.0 ±" not in text and other in text


def test_missing_files_exit_3(check, tmp_path):
    assert check(["--table", str(tmp_path / "none.md"), "--readme", str(tmp_path / "none")]) == 3


def test_the_readme_block_covers_as_many_tables_as_it_shows(check, tmp_path):
    second = "| method | MSP |\n|---|---|\n| plain | 66.3 ± 0.2 |\n"
    readme = _readme(tmp_path, {cpu_info().key: TABLE + "\n" + second})
    (tmp_path / "table.md").write_text("x\n\n" + TABLE + "\nnote\n\n" + second + "\nmore\n\n| a |\n|---|\n")
    args = ["--table", str(tmp_path / "table.md"), "--readme", str(readme)]
    assert check(args) == 0
    (tmp_path / "table.md").write_text("x\n\n" + TABLE + "\nnote\n\n" + second.replace("66.3", "66.4"))
    assert check(args) == 1
