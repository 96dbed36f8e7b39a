"""The ``oltr compare`` subcommand (registered in :mod:`oltr.cli`)."""
from __future__ import annotations

import argparse
import dataclasses

__all__ = ["run_from_args"]


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``oltr compare`` for parsed arguments (``config``, ``out``, ``quick``, ``seeds``,
    ``no_plots``, ``jobs``); returns the exit status."""
    from oltr.compare.run import run_compare
    from oltr.compare.spec import load_compare_spec

    spec = load_compare_spec(args.config)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        spec = dataclasses.replace(spec, seeds=spec.seeds[:args.seeds])
    jobs = getattr(args, "jobs", None) or 1
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    run_compare(spec, args.out, quick=args.quick, plots=not args.no_plots, jobs=jobs)
    return 0
