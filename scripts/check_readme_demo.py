#!/usr/bin/env python3
"""Check (or update) the README's demo table for this CPU against a demo run's table.md.

The README keeps one demo table per CPU it was measured on, each between markers::

    <!-- demo-table: AMD EPYC | family 25 | model 17 -->
    | model | overall top-1 | ... |
    ...
    <!-- /demo-table -->

Runs are deterministic on one machine, not across CPUs, so the check compares the table of
THIS CPU only (``oltr._platform.cpu_info().key``) with the first tables of ``table.md``
(written by ``make demo`` / ``oltr demo --out demo_out``): as many as the README's block shows
(``--update`` writes the first two: methods × accuracy / open F, and AUROC by detector).

Exit codes: 0 equal (or updated with ``--update``), 1 different, 2 no table for this CPU in the
README (``--update`` adds one at the end of the block list), 3 bad input.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from oltr._platform import cpu_info  # noqa: E402

_BLOCK = re.compile(r"<!-- demo-table: (?P<key>[^>]*?) -->\n(?P<body>.*?)<!-- /demo-table -->\n?", re.S)


def tables(text: str) -> list[list[str]]:
    """The Markdown tables in ``text``, each as its consecutive lines starting with ``|``."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def table_lines(text: str, count: int = 1) -> list[str]:
    """The lines of the first ``count`` Markdown tables in ``text``."""
    return [line for table in tables(text)[:count] for line in table]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="demo_out/table.md", help="the demo's table.md")
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--update", action="store_true", help="write this CPU's table into the README")
    args = parser.parse_args(argv)
    table_path, readme_path = Path(args.table), Path(args.readme)
    for path in (table_path, readme_path):
        if not path.is_file():
            print(f"check_readme_demo: {path} not found (run `make demo` first?)", file=sys.stderr)
            return 3
    measured_text = table_path.read_text()
    measured = table_lines(measured_text)
    if not measured:
        print(f"check_readme_demo: no Markdown table in {table_path}", file=sys.stderr)
        return 3
    key = cpu_info().key
    readme = readme_path.read_text()
    blocks = {m.group("key"): m for m in _BLOCK.finditer(readme)}
    if key not in blocks:
        if not args.update:
            print(f"check_readme_demo: the README has no demo table for this CPU ({key}); "
                  f"it has: {sorted(blocks) or 'none'}", file=sys.stderr)
            return 2
        if not blocks:
            print("check_readme_demo: the README has no demo-table block to add this CPU's after",
                  file=sys.stderr)
            return 3
        last = max(blocks.values(), key=lambda m: m.end())
        shown = tables(measured_text)[:2]
        new = f"<!-- demo-table: {key} -->\n" + "\n\n".join("\n".join(t) for t in shown) + "\n<!-- /demo-table -->\n"
        readme_path.write_text(readme[:last.end()] + "\n" + new + readme[last.end():])
        print(f"added the demo table of {key} to {readme_path}")
        return 0
    block = blocks[key]
    count = max(1, len(tables(block.group("body"))))  # the README shows the first tables of table.md
    recorded = table_lines(block.group("body"), count)
    measured = table_lines(measured_text, count)
    if recorded == measured:
        print(f"README demo table for {key} equals {table_path}")
        return 0
    if args.update:
        body = "\n\n".join("\n".join(t) for t in tables(measured_text)[:count]) + "\n"
        start, end = block.span("body")
        readme_path.write_text(readme[:start] + body + readme[end:])
        print(f"updated the demo table of {key} in {readme_path}")
        return 0
    sys.stdout.writelines(difflib.unified_diff(
        [line + "\n" for line in recorded], [line + "\n" for line in measured],
        f"README.md ({key})", str(table_path)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
