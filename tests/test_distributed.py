"""Multi-process training and inference on torch.distributed (gloo, 2 CPU processes).

Every distributed run is launched by ``torchrun`` (``python -m torch.distributed.run``) on
127.0.0.1 and compared with the same work done here in one process:

* ``torchrun -m oltr train`` (stage 1, one epoch), then ``--resume`` for a second epoch under
  torchrun, equals two single-process epochs (weights, BN statistics, optimiser state);
* stage 2 under DDP: the memory initialised from sharded class means equals the
  single-process class means; after a few steps (class-aware sampler, official centroid
  gradient, BatchNorm) the weights, the centroids and both optimisers' states equal the
  single-process run's, and are identical on both ranks;
* ``oltr eval`` and ``oltr predict`` sharded over the ranks give the single-process metrics
  and records, in input order, written once.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import oltr
from oltr.datasets import digits_lt
from oltr.predict import predict
from oltr.train import load_config, load_resume_state, train
from oltr.train.eval_run import evaluate_checkpoint
from oltr.train.trainer import _Run

if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("this torch build has no torch.distributed with gloo", allow_module_level=True)

_STEPS = ["progress=false", "device=cpu", "threads=1", "steps_per_epoch=4"]

def _centroid_loss_case():
    """feat (8, 4), labels (8,), centroids (3, 4): the even rows (rank 0) lie far from the
    centroids (local mean masked distance > the margin 10), the odd rows (rank 1) close."""
    gen = torch.Generator().manual_seed(3)
    feat = torch.randn(8, 4, generator=gen)
    feat[0::2] *= 4.0
    return feat, torch.tensor([0, 1, 2, 0, 1, 2, 0, 0]), torch.randn(3, 4, generator=gen)


_WORKER = textwrap.dedent('''
    import sys

    import torch

    from oltr import cli
    from oltr.train import load_config
    from oltr.train.data import train_loader
    from oltr.train.distributed import all_gather_object, is_main, launched, rank, world_size
    from oltr.train.sync_centroid_loss import DistributedDiscCentroidsLoss
    from oltr.train.trainer import _Run

    out, stage1_dir, stage1_single_best, stage2_best, list_file = sys.argv[1:6]
    overrides = sys.argv[6:]
    torch.set_num_threads(1)
    with launched("cpu"):
        assert world_size() == 2
        sets = [part for item in [*overrides, "epochs=2"] for part in ("--set", item)]
        code = cli.main(["train", "digits_lt_stage1", "--resume", "--out", stage1_dir, *sets])
        assert code == 0, code
        config = load_config("digits_lt_stage2", [*overrides, "epochs=1", f"out_dir={out}/stage2",
                                                  f"model.init={stage1_single_best}"])
        run = _Run(config, torch.device("cpu"))
        run.initialise()
        init = run.criterion.centroids.detach().clone()
        # the samplers as the trainer builds them (rank and world size from the process group)
        plain = train_loader(load_config("digits_lt_stage1", overrides), run.data).sampler
        for sampler in (run.loader.sampler, plain):
            sampler.set_epoch(1)
        indices = {"class_aware": list(run.loader.sampler), "shuffle": list(plain)}
        run.train_epoch()
        state = {"init": init, "indices": indices, "model": run.model.state_dict(),
                 "centroids": run.criterion.centroids.detach(),
                 "model_optimizer": run.model_opt.state_dict(), "criterion_optimizer": run.crit_opt.state_dict()}
        states = all_gather_object(state)
        if is_main():
            torch.save(states, f"{out}/stage2_ranks.pt")
        assert cli.main(["eval", stage2_best, "--open", "--device", "cpu", "--json", f"{out}/eval.json"]) == 0
        import oltr.predict

        # gathering rounds of 2 ranks x 1 batch of 2: 21 inputs -> 6 rounds, in the last rank 1 has no input
        oltr.predict._GATHER_BATCHES = 1
        assert cli.main(["predict", stage2_best, list_file, "--device", "cpu", "--batch-size", "2",
                         "-o", f"{out}/predict.jsonl"]) == 0
        losses = {}
        for mode in ("official", "autograd"):  # a batch whose local repel means straddle the margin
            feat, labels, centroids = CENTROID_LOSS_CASE()
            feat = feat[rank()::2].clone().requires_grad_(True)
            loss = DistributedDiscCentroidsLoss(3, 4, gradient=mode)
            loss.centroids.data.copy_(centroids)
            terms = loss.terms(feat, labels[rank()::2])
            (terms.attract + loss.repel_weight * terms.repel).backward()
            losses[mode] = {"repel": terms.repel.detach(), "feat_grad": feat.grad, "centroid_grad": loss.centroids.grad}
        states = all_gather_object(losses)
        if is_main():
            torch.save(states, f"{out}/loss_ranks.pt")
    # Every result is written and the group destroyed (`launched`). Skip the interpreter's
    # teardown, which this test does not check: torch's gloo teardown at interpreter exit
    # occasionally aborts a rank ("terminate called without an active exception"; once in
    # 18 launches on the shared 2-core machine, after all files were written).
    sys.stdout.flush()
    sys.stderr.flush()
    import os
    os._exit(0)
''')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 ARGS`` on 127.0.0.1 with gloo over the loopback."""
    env = dict(os.environ)
    package_root = str(Path(oltr.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # the loopback only, whatever the host name resolves to
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:  # the workers' own messages, before torchrun's summary
        workers = [line for line in done.stderr.splitlines() if not line.startswith(("W", "I")) or "[rank" in line]
        pytest.fail(f"{' '.join(command)} failed ({done.returncode})\n{done.stdout[-3000:]}\n"
                    + "\n".join(workers[-80:]))
    package = str(Path(oltr.__file__).resolve().parent) + os.sep
    ours = [line for line in done.stderr.splitlines() if "Warning:" in line and package in line]
    assert not ours, "\n".join(ours)  # oltr's code warns nothing (a deprecated API, ...) in the workers
    return done


def _sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Single-process references and the distributed runs (two torchrun launches)."""
    root = tmp_path_factory.mktemp("ddp")
    single1 = train(load_config("digits_lt_stage1", [*_STEPS, "epochs=2", f"out_dir={root / 'single1'}"]))
    stage2 = load_config("digits_lt_stage2", [*_STEPS, "epochs=1", f"out_dir={root / 'single2'}",
                                              f"model.init={single1.best_path}"])
    run = _Run(stage2, torch.device("cpu"))
    run.initialise()
    init = run.criterion.centroids.detach().clone()
    run.train_epoch()
    single2 = {"init": init, "model": run.model.state_dict(), "centroids": run.criterion.centroids.detach(),
               "model_optimizer": run.model_opt.state_dict(), "criterion_optimizer": run.crit_opt.state_dict()}
    best2 = train(stage2).best_path  # a trained stage-2 model to evaluate and predict with

    from PIL import Image

    images = digits_lt().test_images[:21]
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / f"{i}.png")
    (root / "inputs.txt").write_text("".join(f"{i}.png -1\n" for i in range(len(images))))

    launched = root / "ddp"
    launched.mkdir()
    first = _torchrun(["-m", "oltr", "train", "digits_lt_stage1", "--out", str(root / "ddp1"),
                       *_sets([*_STEPS, "epochs=1"])], cwd=root)
    import inspect

    case = inspect.getsource(_centroid_loss_case).replace("_centroid_loss_case", "CENTROID_LOSS_CASE")
    (root / "worker.py").write_text("import torch\n" + case + _WORKER)
    _torchrun([str(root / "worker.py"), str(launched), str(root / "ddp1"), str(single1.best_path), str(best2),
               str(root / "inputs.txt"), *_STEPS], cwd=root)
    return {"root": root, "single1": single1, "single2": single2, "best2": best2, "launched": launched,
            "first_stdout": first.stdout}


def _assert_state_close(got, want, what):
    assert set(got) == set(want), what
    for key in want:
        a, b = got[key], want[key]
        if torch.is_tensor(b):
            assert torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-5), \
                f"{what}[{key}]: max diff {float((a.double() - b.double()).abs().max())}"
        elif isinstance(b, dict):
            _assert_state_close(a, b, f"{what}[{key}]")
        elif isinstance(b, (list, tuple)):
            assert len(a) == len(b), f"{what}[{key}]"
            for i, (x, y) in enumerate(zip(a, b)):
                _assert_state_close({i: x}, {i: y}, f"{what}[{key}]")
        else:
            assert a == b, f"{what}[{key}]: {a!r} != {b!r}"


def test_torchrun_train_and_resume_equal_one_process(runs):
    root = runs["root"]
    assert runs["first_stdout"].count("best val top-1") == 1  # rank 0 alone prints
    ddp, single = load_resume_state(root / "ddp1" / "last.pt"), load_resume_state(root / "single1" / "last.pt")
    assert ddp["epoch"] == single["epoch"] == 2  # one epoch under torchrun, one more after --resume
    _assert_state_close(ddp["model"], single["model"], "model")  # BN statistics included
    _assert_state_close(ddp["model_optimizer"]["state"], single["model_optimizer"]["state"], "momentum")
    log = [json.loads(line) for line in (root / "ddp1" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == [1, 2]  # one line per epoch: rank 0 only
    single_log = [json.loads(line) for line in (root / "single1" / "log.jsonl").read_text().splitlines()]
    for got, want in zip([r for r in log if r["event"] == "epoch"], [r for r in single_log if r["event"] == "epoch"]):
        assert got["val_top1"] == pytest.approx(want["val_top1"])  # sharded validation, gathered
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)  # reduced over ranks


def test_memory_init_is_the_global_class_means(runs):
    ranks = torch.load(runs["launched"] / "stage2_ranks.pt", weights_only=False)
    assert len(ranks) == 2
    for state in ranks:
        assert torch.allclose(state["init"], runs["single2"]["init"], atol=1e-5)


def test_stage2_steps_equal_one_process_and_ranks_agree(runs):
    rank0, rank1 = torch.load(runs["launched"] / "stage2_ranks.pt", weights_only=False)
    for key in ("model", "centroids", "model_optimizer", "criterion_optimizer"):  # after 4 steps
        _assert_state_close({key: rank1[key]}, {key: rank0[key]}, "rank 1 vs rank 0")
        _assert_state_close({key: rank0[key]}, {key: runs["single2"][key]}, "DDP vs one process")
    moved = (runs["single2"]["centroids"] - runs["single2"]["init"]).abs().max()
    assert moved > 1e-4  # the steps did move the memory


def test_sharded_eval_equals_one_process(runs):
    got = json.loads((runs["launched"] / "eval.json").read_text())
    metrics = evaluate_checkpoint(runs["best2"], open_set=True, device="cpu")
    want = json.loads(json.dumps(metrics, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
    assert (got["num_known"], got["num_unknown"]) == (want["num_known"], want["num_unknown"])
    _compare_numbers(got, want, "eval")


def _compare_numbers(got, want, where):
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            _compare_numbers(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            _compare_numbers(a, b, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-6, nan_ok=True), where
    else:
        assert got == want, where


def test_sharded_predict_equals_one_process(runs):
    lines = (runs["launched"] / "predict.jsonl").read_text().splitlines()
    got = [json.loads(line) for line in lines]
    want = list(predict(runs["best2"], [runs["root"] / "inputs.txt"], device="cpu"))
    assert [r["input"] for r in got] == [r["input"] for r in want]  # input order, each input once
    assert [r["label"] for r in got] == [r["label"] for r in want]
    for a, b in zip(got, want):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)


@pytest.mark.parametrize("mode", ["official", "autograd"])
def test_centroid_loss_gradients_equal_the_global_batch(runs, mode):
    from oltr.nn import DiscCentroidsLoss

    feat, labels, centroids = _centroid_loss_case()
    loss = DiscCentroidsLoss(3, 4, gradient=mode)
    loss.centroids.data.copy_(centroids)
    feat.requires_grad_(True)
    terms = loss.terms(feat, labels)
    with torch.no_grad():
        local_means = [float(loss.terms(feat[r::2], labels[r::2]).mean_masked_sqdist) for r in range(2)]
    assert min(local_means) < loss.repel_margin < max(local_means)  # the case straddles the margin
    (terms.attract + loss.repel_weight * terms.repel).backward()
    ranks = torch.load(runs["launched"] / "loss_ranks.pt", weights_only=False)
    for r, got in enumerate(ranks):
        got = got[mode]
        assert torch.allclose(got["repel"], terms.repel.detach(), atol=1e-5)  # the global clamp
        # DDP averages the model's gradients over the 2 ranks: half the local feature gradient
        assert torch.allclose(got["feat_grad"] / 2, feat.grad[r::2], atol=1e-6)
        assert torch.allclose(got["centroid_grad"], loss.centroids.grad, atol=1e-6)  # averaged by the hook


def test_samplers_shard_the_single_process_stream_under_gloo(runs):
    from oltr.data import ClassAwareSampler, ShardedSampler

    rank0, rank1 = torch.load(runs["launched"] / "stage2_ranks.pt", weights_only=False)
    labels = digits_lt().train_labels
    epoch_items = 2 * len(rank0["indices"]["class_aware"])  # the trainer's steps x batch (cycles continue)
    single = {"class_aware": ClassAwareSampler(labels, samples_per_class=4, seed=0, num_samples=epoch_items,
                                               num_replicas=1, rank=0),
              "shuffle": ShardedSampler(len(labels), shuffle=True, seed=0, num_replicas=1, rank=0)}
    for kind, sampler in single.items():
        sampler.set_epoch(1)
        a, b = rank0["indices"][kind], rank1["indices"][kind]
        assert len(a) == len(b)  # equal step counts on every rank
        stream = list(sampler)
        merged = [i for pair in zip(a, b) for i in pair]
        assert merged[:len(stream)] == stream  # rank r holds positions r, r + 2, ... of the same stream
    shuffled = rank0["indices"]["shuffle"] + rank1["indices"]["shuffle"]
    assert sorted(set(shuffled)) == list(range(len(labels)))  # no item left out
    assert len(shuffled) - len(set(shuffled)) == len(labels) % 2  # only the padding repeats
