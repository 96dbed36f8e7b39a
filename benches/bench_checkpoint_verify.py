"""What the CRC-32 check of a zip checkpoint costs next to loading it.

Writes a checkpoint of ``--mb`` megabytes of float32 (one tensor per ``--tensors``), then
times, as the median of ``--repeats`` runs each (file in the page cache after the first):

* ``verify``: :func:`oltr.checkpoint.verify_archive` (reads every record, checks its CRC-32);
* ``torch.load``: ``torch.load(map_location="cpu", weights_only=True)`` alone;
* ``load_verified``: both, as every oltr loader does.

Run: ``python3 benches/bench_checkpoint_verify.py [--mb 100] [--tensors 1 200] [--repeats 5]``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from _timing import median_seconds  # benches/ helper (the script's folder is on sys.path)
from oltr.checkpoint import load_verified, verify_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="checkpoint size in MB (float32 payload)")
    parser.add_argument("--tensors", type=int, nargs="+", default=[1, 200], help="tensor counts to try")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    numel = int(args.mb * 1e6 / 4)
    print(f"{'MB':>6} {'tensors':>8} {'verify s':>9} {'torch.load s':>13} {'load_verified s':>16}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.pt"
        for count in args.tensors:
            torch.save({f"w{i}": torch.randn(numel // count) for i in range(count)}, path)
            size = path.stat().st_size / 1e6
            verify = median_seconds(lambda: verify_archive(path), args.repeats)
            plain = median_seconds(lambda: torch.load(path, map_location="cpu", weights_only=True), args.repeats)
            both = median_seconds(lambda: load_verified(path), args.repeats)
            print(f"{size:6.0f} {count:8d} {verify:9.3f} {plain:13.3f} {both:16.3f}")


if __name__ == "__main__":
    main()
