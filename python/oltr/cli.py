"""The ``oltr`` command.

::

    oltr train CONFIG [--set KEY=VALUE ...] [--resume | --overwrite] [--device auto|cpu|cuda] [--out DIR]
    oltr eval CHECKPOINT [--open] [--split test|val] [--test-list FILE] [--open-list FILE] [--root DIR]
              [--set KEY=VALUE ...] [--json FILE] [--device ...]
    oltr predict CHECKPOINT INPUT [INPUT ...] [--output FILE] [--rule val|official] [--root DIR]
    oltr enroll CHECKPOINT (--images FILE [FILE ...] | --list FILE) --name NAME --output NEW.pt [--root DIR]
                [--imprint mean|calibrated]
    oltr bench [--shapes 1x1e4,64x1e4:10] [--threads N] [--quick]
    oltr demo [--out DIR] [--seeds N] [--quick] [--jobs N] [--device ...]
    oltr compare CONFIG [--out DIR] [--quick] [--seeds N] [--no-plots] [--jobs N]
    oltr configs

CONFIG is a YAML file or the name of a shipped config (``oltr configs`` lists them).
Errors print one line, ``oltr: error: ...``, and exit with status 1 (2 for usage errors);
set ``OLTR_DEBUG=1`` to get the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Sequence

from oltr._paths import listed_files, refuse_overwrite

__all__ = ["build_parser", "format_metrics", "main"]

_DEVICES = ("auto", "cpu", "cuda")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``oltr`` command."""
    parser = argparse.ArgumentParser(
        prog="oltr", description="Open long-tailed recognition (OLTR): train, evaluate, predict, demo.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train one stage from a YAML config")
    p.add_argument("config", help="YAML config file or shipped config name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted keys, typed values); repeatable")
    again = p.add_mutually_exclusive_group()  # a non-empty output folder needs one of them
    again.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in the output folder: removes oltr's files there (best.pt, "
                            "last.pt, log.jsonl, config.yaml, eval_*.json) and keeps any other file")
    p.add_argument("--device", choices=_DEVICES, default=None, help="overrides the config's device")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (overrides out_dir)")

    p = sub.add_parser("eval", help="evaluate a trained model (best.pt)")
    p.add_argument("checkpoint")
    p.add_argument("--open", action="store_true", help="add the open set: official and modern open-set metrics")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--test-list", default=None, metavar="FILE",
                   help="evaluate the images of this list file ('<path> <label>', -1 = unknown) instead of --split")
    p.add_argument("--open-list", default=None, metavar="FILE",
                   help="add the unknown images of this list file (every label must be -1)")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="folder the lists' image paths are relative to (default: each list's folder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a stored config value for this evaluation (e.g. eval.batch_size=64); repeatable")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="where to write the report (default: eval_<split or list name>[_open].json beside the "
                        "checkpoint)")
    p.add_argument("--device", choices=_DEVICES, default="auto")

    p = sub.add_parser("predict", help="label images, a list file or a .npy of features")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--output", "-o", default="-", metavar="FILE", help="JSON-lines output (default: stdout)")
    p.add_argument("--rule", choices=("val", "official"), default=None,
                   help="unknown if MSP below the validation-chosen threshold (val, the default stored in the "
                        "checkpoint) or below 0.1 (official)")
    p.add_argument("--root", default=None, help="image root of a list file (default: its folder)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=_DEVICES, default="auto")

    p = sub.add_parser("enroll", help="add a class to a trained model from a few images (no training); "
                       "writes a new checkpoint")
    p.add_argument("checkpoint")
    examples = p.add_mutually_exclusive_group(required=True)
    examples.add_argument("--images", nargs="+", metavar="FILE", help="images of the new class")
    examples.add_argument("--list", metavar="FILE",
                          help="a file naming the images, one per line (the first token of a line; '#' comments)")
    p.add_argument("--root", default=None, metavar="DIR", help="folder the list's paths are relative to "
                   "(default: the list's folder)")
    p.add_argument("--name", required=True, help="the new class's name")
    p.add_argument("--output", "-o", required=True, metavar="NEW.pt", help="the new checkpoint (never an input)")
    p.add_argument("--imprint", choices=("mean", "calibrated"), default="mean",
                   help="the cosine classifier's new row: the normalised mean meta-embedding (mean, weight "
                        "imprinting) or calibrated against the trained rows (takes fewer images of the old "
                        "classes; docs/enrollment.md)")
    p.add_argument("--device", choices=_DEVICES, default="auto")

    # `oltr bench ARGS...` hands ARGS to oltr.memory.bench.main, which has its own --help.
    sub.add_parser("bench", help="quick nearest-centroid benchmark: the Rust core vs numpy, torch, faiss "
                   "(the full one: python3 benches/bench_memory.py)",
                   add_help=False)

    p = sub.add_parser("demo", help="the main job: OLTR against the simple long-tail and open-set baselines on the "
                       "embedded Fashion-MNIST-LT (oltr compare compare_fashion_lt), several seeds")
    p.add_argument("--out", default="demo_out", metavar="DIR")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
    p.add_argument("--device", choices=_DEVICES, default="cpu")
    p.add_argument("--jobs", type=int, default=None,
                   help="seeds trained in parallel processes (default: min(seeds, CPU cores, 2))")

    p = sub.add_parser("compare", help="OLTR against long-tail and open-set baselines on one protocol (a YAML)")
    p.add_argument("config", help="compare YAML file or shipped name (compare_fashion_lt, compare_digits_lt)")
    p.add_argument("--out", default="compare_out", metavar="DIR")
    p.add_argument("--quick", action="store_true", help="every training runs the config's quick_epochs (smoke test)")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="only the config's first N seeds")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes (default 1)")

    sub.add_parser("configs", help="list the shipped configs")
    return parser


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def format_metrics(report: dict[str, Any]) -> str:
    """A plain-text table of a report (``oltr.report/1``, as ``oltr eval`` writes it)."""
    meta = report.get("meta", {})
    data = meta.get("data", {})
    source = data.get("test_list") or data.get("split") or "?"
    lines = [f"checkpoint {meta.get('checkpoint', '?')}  stage {meta.get('stage', '?')}  data {source}"
             + (f" + {data['open_list']}" if data.get("open_list") else "")
             + f"  known {report['num_known']}  unknown {report['num_unknown']}"]
    closed = report["closed"]
    closed_keys = ("top1", "macro_f1", "many", "medium", "few")
    lines.append("closed set   " + "  ".join(f"{k} {_fmt(closed[k])}" for k in closed_keys))
    blocks = [("open @0.1   ", report["official"])]
    if "msp" in report["reject"]:
        blocks.append(("open @val   ", report["reject"]["msp"]))
    for title, b in blocks:
        lines.append(title + "  ".join(f"{k} {_fmt(b[k])}" for k in (
            "f_measure", "f_measure_legacy", "open_set_accuracy", "top1", "many", "medium", "few")))
    if report["num_unknown"]:
        lines.append(f"{'score':<13}{'AUROC':>8}{'FPR95':>8}{'AUPR-in':>9}{'AUPR-out':>9}{'OSCR':>8}"
                     f"{'AUROC many/med/few':>24}")
        for name, m in report["modern"].items():
            groups = "/".join(_fmt(m["groups"][g]["auroc"]) for g in ("many", "medium", "few"))
            lines.append(f"{name:<13}{_fmt(m['auroc']):>8}{_fmt(m['fpr_at_tpr']):>8}{_fmt(m['aupr_in']):>9}"
                         f"{_fmt(m['aupr_out']):>9}{_fmt(m['oscr']):>8}{groups:>24}")
    return "\n".join(lines)


def _refuse_train_overwrite(config_arg: str, config: Mapping[str, Any]) -> None:
    """The files a run writes into out_dir must not be its config, model.init or data lists."""
    from oltr.train.checkpoints import BEST_NAME, LAST_NAME

    data = config["data"]
    lists = ("train_list", "val_list", "test_list", "open_list")
    inputs = [config_arg, config["model"]["init"]] + [data[k] for k in lists]
    for name in (BEST_NAME, LAST_NAME, "log.jsonl", "config.yaml"):
        refuse_overwrite(Path(config["out_dir"]) / name, inputs, what="out_dir")


def _predict_inputs(args: argparse.Namespace) -> list[str | Path]:
    """predict's inputs: the checkpoint, the input files and the images a list file names."""
    from oltr.predict import LIST_SUFFIXES

    inputs: list[str | Path] = [args.checkpoint, *args.inputs]
    for item in args.inputs:
        if Path(item).suffix.lower() in LIST_SUFFIXES:
            inputs.extend(listed_files(item, args.root))
    return inputs


def _cmd_train(args: argparse.Namespace) -> int:
    from oltr.train import load_config, train
    from oltr.train.distributed import is_main, launched
    from oltr.train.run_dir import prepare_run_dir

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"out_dir={args.out}")
    config = load_config(args.config, overrides)
    _refuse_train_overwrite(args.config, config)
    with launched(args.device or config["device"]):  # joins torchrun's process group, if any
        removed = prepare_run_dir(config["out_dir"], resume=args.resume, overwrite=args.overwrite)
        if removed and is_main():
            print(f"--overwrite: removed {len(removed)} file(s) of the previous run: "
                  f"{', '.join(p.name for p in removed)}", file=sys.stderr)
        result = train(config, resume=args.resume, device=args.device)
        if is_main():
            print(f"best val top-1 {result.best_acc:.4f} at epoch {result.best_epoch}; model: {result.best_path}")
    return 0


def _eval_target(args: argparse.Namespace) -> Path:
    if args.json:
        return Path(args.json)
    name = Path(args.test_list).stem if args.test_list else args.split
    opened = args.open or args.open_list
    return Path(args.checkpoint).with_name(f"eval_{name}{'_open' if opened else ''}.json")


def _cmd_eval(args: argparse.Namespace) -> int:
    from oltr.inference.checkpoint_eval import evaluate_checkpoint
    from oltr.inference.report import json_ready
    from oltr.train.distributed import is_main, launched

    inputs = [args.checkpoint, args.test_list, args.open_list]
    target = _eval_target(args)
    refuse_overwrite(target, inputs, what="--json")
    with launched(args.device):  # under torchrun each rank evaluates a share; rank 0 reports
        report = evaluate_checkpoint(args.checkpoint, open_set=args.open, split=args.split, device=args.device,
                                     test_list=args.test_list, open_list=args.open_list, root=args.root,
                                     overrides=args.overrides)
        if not is_main():
            return 0
    print(format_metrics(report))
    refuse_overwrite(target, inputs, what="--json")
    target.write_text(json.dumps(json_ready(report), indent=2, default=str))
    print(f"wrote {target}", file=sys.stderr)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from oltr.inference import Predictor
    from oltr.predict import InputError, collect_inputs, predictions, write_jsonl
    from oltr.train.distributed import is_main, launched

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1; got {args.batch_size}")
    collect_inputs(args.inputs)  # input errors before the model is loaded
    refuse_overwrite(args.output, _predict_inputs(args), what="--output")
    with launched(args.device):  # under torchrun each rank predicts a share; rank 0 writes
        predictor = Predictor.from_checkpoint(args.checkpoint, args.device, rule=args.rule,
                                              batch_size=args.batch_size)
        records = (r for chunk in predictions(predictor, args.inputs, args.root) for r in chunk.records())
        if not is_main():
            for _ in records:  # take part in the gathering; rank 0 gets every record
                pass
            return 0
        if args.output == "-":
            count = write_jsonl(records, sys.stdout)
        else:
            collected = list(records)  # fail before creating the file
            with open(args.output, "w") as stream:
                count = write_jsonl(iter(collected), stream)
    print(f"predicted {count} input(s)", file=sys.stderr)
    return 0


def _cmd_enroll(args: argparse.Namespace) -> int:
    from oltr.inference.enrollment import enroll_command

    return enroll_command(args.checkpoint, args.images, args.list, args.root, args.name, args.output, args.device,
                          args.imprint)


def _cmd_bench(bench_args: Sequence[str]) -> int:
    from oltr.memory.bench import main as bench_main

    try:
        return int(bench_main(list(bench_args)) or 0)
    except SystemExit as exc:  # its argparse: --help or a usage error
        return exc.code if isinstance(exc.code, int) else 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from oltr.demo import run_demo

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    jobs = args.jobs if args.jobs is not None else max(1, min(args.seeds, os.cpu_count() or 1, 2))
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    run_demo(args.out, seeds=args.seeds, quick=args.quick, device=args.device, jobs=jobs)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from oltr.compare.cli import run_from_args

    return run_from_args(args)


def _cmd_configs(_args: argparse.Namespace) -> int:
    from oltr.train import shipped_configs
    from oltr.train.config import config_dir

    for name in shipped_configs():
        print(name)
    print(f"(in {config_dir()})", file=sys.stderr)
    return 0


_COMMANDS = {"train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict, "enroll": _cmd_enroll,
             "demo": _cmd_demo, "compare": _cmd_compare, "configs": _cmd_configs}


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: Optional[str] = None) -> str:
    return f"oltr: warning: {message}\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``oltr`` command; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] != ["bench"]:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse already printed its one-line usage error or help
            return exc.code if isinstance(exc.code, int) else 2
    shown_as = warnings.formatwarning
    warnings.formatwarning = _one_line_warning  # a warning is one stderr line, as an error is
    try:
        if argv[:1] == ["bench"]:
            return _cmd_bench(argv[1:])
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("oltr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the command's contract: one line, no traceback
        if os.environ.get("OLTR_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) and exc.filename and \
                str(exc.filename) not in message:
            message = f"{message}: {exc.filename}"
        from oltr.errors import OLTRError

        if not isinstance(exc, (OLTRError, ValueError, OSError)):  # unexpected: say what it was
            message = f"{type(exc).__name__}: {message} (OLTR_DEBUG=1 shows the traceback)"
        print(f"oltr: error: {message}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = shown_as
