#!/usr/bin/env python3
"""Write the training config reference (key, type, default, meaning) to docs/config-reference.md
and into the README's ``<!-- config-reference -->`` block.

The table is generated from the typed config's dataclass fields and their metadata
(oltr.train.config.reference); tests/test_config_reference.py checks the committed file and the
README block equal this script's output.

    python3 scripts/config_reference.py              # rewrite docs/config-reference.md and the README block
    python3 scripts/config_reference.py --output -   # print it instead
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oltr.train.config.reference import markdown

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "config-reference.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- config-reference -->\n", "<!-- /config-reference -->"


def readme_block(text: str) -> str:
    """What the README shows between its markers: the reference without its title line."""
    return text.split("\n", 2)[2] if text.startswith("# ") else text


def with_readme_block(readme: str, text: str) -> str:
    """``readme`` with its config-reference block replaced by ``text``'s (ValueError without markers)."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN.strip()} ... {END} block")
    return readme[:start + len(BEGIN)] + readme_block(text) + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", default=str(DEFAULT_OUTPUT),
                        help="file to write, or - for stdout (default: docs/config-reference.md)")
    args = parser.parse_args(argv)
    text = markdown()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        README.write_text(with_readme_block(README.read_text(encoding="utf-8"), text), encoding="utf-8")
        print(f"wrote {args.output} and the block in {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
