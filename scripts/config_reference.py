#!/usr/bin/env python3
"""Write the training config reference (key, type, default, meaning) to docs/config-reference.md.

The table is generated from the typed config's dataclass fields and their metadata
(oltr.train.config.reference); tests/test_config_reference.py checks the committed file
equals this script's output.

    python3 scripts/config_reference.py              # rewrite docs/config-reference.md
    python3 scripts/config_reference.py --output -   # print it instead
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oltr.train.config.reference import markdown

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"


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
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
