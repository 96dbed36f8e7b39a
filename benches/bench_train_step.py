"""Stage-2 training step of the OLTR head on CPU: oltr's modules vs the official formulas.

One step = meta-embedding classifier forward on a (B, D) feature batch (standing in for the
backbone output) with the live centroids, CE + 0.01 * DiscCentroidsLoss on the direct
feature, backward, then one SGD step of the model optimizer (lr 0.1, momentum 0.9, wd 5e-4)
and one of the criterion optimizer (lr 0.01). Both sides start from the same weights; the
script checks that they give the same loss before timing.

* "official": a plain re-statement of the official code: the (B, K, D)
  expand + ``torch.norm`` + ``torch.sort`` distance, the custom-backward attract term, the
  ``addmm`` distance matrix with in-place masking.
* "oltr": :class:`oltr.nn.MetaEmbeddingClassifier` + :class:`oltr.nn.DiscCentroidsLoss`.

Run: ``python benches/bench_train_step.py [--batch 128 256] [--classes 1000] [--dim 512]
[--threads N]``. Prints the step time of each (the best of two interleaved medians) and the
ratio oltr / official (target <= 1.0); exits 1 when the ratio exceeds 1.
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from _timing import median_seconds  # benches/ helper (the script's folder is on sys.path)
from oltr.nn import DiscCentroidsLoss, MetaEmbeddingClassifier


class _OfficialAttract(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feature, label, centroids, batch_size):
        ctx.save_for_backward(feature, label, centroids, batch_size)
        centroids_batch = centroids.index_select(0, label.long())
        return (feature - centroids_batch).pow(2).sum() / 2.0 / batch_size

    @staticmethod
    def backward(ctx, grad_output):
        feature, label, centroids, batch_size = ctx.saved_tensors
        centroids_batch = centroids.index_select(0, label.long())
        diff = centroids_batch - feature
        counts = centroids.new_ones(centroids.size(0))
        ones = centroids.new_ones(label.size(0))
        grad_centroids = centroids.new_zeros(centroids.size())
        counts = counts.scatter_add_(0, label.long(), ones)
        grad_centroids.scatter_add_(0, label.unsqueeze(1).expand(feature.size()).long(), diff)
        grad_centroids = grad_centroids / counts.view(-1, 1)
        return -grad_output * diff / batch_size, None, grad_centroids / batch_size, None


class _OfficialLoss(nn.Module):
    def __init__(self, num_classes, feat_dim):
        super().__init__()
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.centroids = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feat, label):
        batch_size = feat.size(0)
        feat = feat.view(batch_size, -1)
        batch_size_tensor = feat.new_empty(1).fill_(batch_size)
        loss_attract = _OfficialAttract.apply(feat.clone(), label, self.centroids.clone(), batch_size_tensor).squeeze()
        distmat = torch.pow(feat.clone(), 2).sum(dim=1, keepdim=True).expand(batch_size, self.num_classes) + \
            torch.pow(self.centroids.clone(), 2).sum(dim=1, keepdim=True).expand(self.num_classes, batch_size).t()
        distmat = distmat.addmm(feat.clone(), self.centroids.clone().t(), beta=1, alpha=-2)
        classes = torch.arange(self.num_classes).long()
        labels_expand = label.unsqueeze(1).expand(batch_size, self.num_classes)
        mask = labels_expand.eq(classes.expand(batch_size, self.num_classes))
        distmat_neg = distmat
        distmat_neg[mask] = 0.0
        loss_repel = torch.clamp(10.0 - distmat_neg.sum() / (batch_size * self.num_classes), 0.0, 1e6)
        return loss_attract + 0.01 * loss_repel


class _OfficialMetaEmbedding(nn.Module):
    def __init__(self, feat_dim, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.fc_hallucinator = nn.Linear(feat_dim, num_classes)
        self.fc_selector = nn.Linear(feat_dim, feat_dim)
        self.cosnorm_weight = nn.Parameter(torch.empty(num_classes, feat_dim))

    def forward(self, x, centroids):
        direct_feature = x.clone()
        batch_size, feat_size = x.size(0), x.size(1)
        x_expand = x.clone().unsqueeze(1).expand(-1, self.num_classes, -1)
        centroids_expand = centroids.clone().unsqueeze(0).expand(batch_size, -1, -1)
        keys_memory = centroids.clone()
        dist_cur = torch.norm(x_expand - centroids_expand, 2, 2)
        values_nn, _ = torch.sort(dist_cur, 1)
        reachability = (10.0 / values_nn[:, 0]).unsqueeze(1).expand(-1, feat_size)
        values_memory = self.fc_hallucinator(x.clone()).softmax(dim=1)
        memory_feature = torch.matmul(values_memory, keys_memory)
        concept_selector = self.fc_selector(x.clone()).tanh()
        x = reachability * (direct_feature + concept_selector * memory_feature)
        norm_x = torch.norm(x.clone(), 2, 1, keepdim=True)
        ex = (norm_x / (1 + norm_x)) * (x / norm_x)
        ew = self.cosnorm_weight / torch.norm(self.cosnorm_weight, 2, 1, keepdim=True)
        return torch.mm(16 * ex, ew.t())


def _build(side, batch, dim, num_classes, seed):
    torch.manual_seed(seed)
    reference = MetaEmbeddingClassifier(dim, num_classes, nearest_backend="torch")
    if side == "oltr":
        classifier, criterion = reference, DiscCentroidsLoss(num_classes, dim)
    else:
        classifier, criterion = _OfficialMetaEmbedding(dim, num_classes), _OfficialLoss(num_classes, dim)
        classifier.fc_hallucinator.load_state_dict(reference.fc_hallucinator.state_dict())
        classifier.fc_selector.load_state_dict(reference.fc_selector.state_dict())
        with torch.no_grad():
            classifier.cosnorm_weight.copy_(reference.cosnorm_classifier.weight)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        criterion.centroids.copy_(torch.randn(num_classes, dim, generator=generator).relu() * 2)
    features = (torch.randn(batch, dim, generator=generator).relu() * 2).requires_grad_(True)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    model_opt = torch.optim.SGD(list(classifier.parameters()) + [features], lr=0.1, momentum=0.9, weight_decay=5e-4)
    criterion_opt = torch.optim.SGD(criterion.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    ce = nn.CrossEntropyLoss()

    def step():
        logits = classifier(features, criterion.centroids.data)
        if isinstance(logits, tuple):
            logits = logits[0]
        loss = ce(logits, labels) + 0.01 * criterion(features, labels)
        model_opt.zero_grad()
        criterion_opt.zero_grad()
        loss.backward()
        model_opt.step()
        criterion_opt.step()
        return float(loss.detach())

    return step



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, D={args.dim}, K={args.classes}")
    print(f"{'B':>5} {'official (ms)':>14} {'oltr (ms)':>10} {'oltr/official':>14}")
    worst = 0.0
    for batch in args.batch:
        steps = {side: _build(side, batch, args.dim, args.classes, seed=0) for side in ("official", "oltr")}
        first = {side: step() for side, step in steps.items()}  # warm-up, and the same math
        if abs(first["official"] - first["oltr"]) > 1e-4 * max(1.0, abs(first["official"])):
            raise SystemExit(f"loss differs: official {first['official']} vs oltr {first['oltr']}")
        timing = {side: [] for side in steps}
        for _ in range(2):  # interleave the two sides against drift on a shared machine
            for side, step in steps.items():
                timing[side].append(median_seconds(step, args.repeats))
        official, ours = min(timing["official"]), min(timing["oltr"])
        worst = max(worst, ours / official)
        print(f"{batch:>5} {official * 1e3:>14.2f} {ours * 1e3:>10.2f} {ours / official:>13.3f}x")
    print(f"worst ratio oltr/official: {worst:.3f}x (target <= 1.0x)")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
