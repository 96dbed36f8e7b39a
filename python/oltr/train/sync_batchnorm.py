"""Batch normalisation over the global batch of all ranks, on any device (CPU included).

``torch.nn.SyncBatchNorm`` refuses CPU tensors, so a DDP run on CPU (gloo) would normalise
each rank's local batch and drift from the single-process run. :class:`GlobalBatchNorm`
all-reduces the per-channel count, sum and sum of squares with an autograd-aware sum
(its backward sums the gradients of all ranks, as SyncBatchNorm's does), so forward
values, running statistics and gradients equal those of one process seeing the whole
batch. :func:`convert_batchnorm` uses ``torch.nn.SyncBatchNorm`` on CUDA
(fused kernels) and :class:`GlobalBatchNorm` elsewhere.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from oltr.train.distributed import all_reduce_sum, is_distributed

__all__ = ["GlobalBatchNorm", "convert_batchnorm"]


class _SumOverRanks(torch.autograd.Function):
    """``sum_r x_r`` on every rank; backward: the gradient summed over the ranks (each rank's
    loss depends on every rank's ``x`` through the sum)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        return all_reduce_sum(tensor.clone())

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return all_reduce_sum(grad.clone())


class GlobalBatchNorm(_BatchNorm):
    """``BatchNorm{1,2,3}d`` whose training statistics span every rank's batch.

    ``forward(input (N, C, *) float) -> (N, C, *)`` same dtype. Without a process group, or
    in eval mode, it is the ordinary batch norm. Statistics are accumulated in float64
    (sum / sum of squares), so the result matches a single process to float32 rounding.
    State-dict keys are those of ``nn.BatchNorm2d``.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of shape (N, C, ...), got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        x64 = input.to(torch.float64)
        local = torch.cat([
            x64.sum(dims), (x64 * x64).sum(dims),
            torch.full((1,), float(input.numel() // input.shape[1]), dtype=torch.float64, device=input.device),
        ])
        total = _SumOverRanks.apply(local)
        channels = input.shape[1]
        count = total[-1]
        mean = total[:channels] / count
        var = total[channels:2 * channels] / count - mean * mean
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - factor).add_(factor * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - factor).add_(factor * unbiased.to(self.running_var.dtype))
        shape = [1, channels] + [1] * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(input.dtype)
        out = (input - mean.to(input.dtype).view(shape)) * scale.view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def _to_global(module: _BatchNorm) -> GlobalBatchNorm:
    out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                          module.track_running_stats)
    if module.affine:
        with torch.no_grad():
            out.weight = module.weight
            out.bias = module.bias
    out.running_mean = module.running_mean
    out.running_var = module.running_var
    out.num_batches_tracked = module.num_batches_tracked
    out.training = module.training
    return out


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch norm in ``module`` by a synchronised one, keeping its parameters
    and buffers (the same tensors, so optimisers built before still hold them).

    CUDA: ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``; other devices:
    :class:`GlobalBatchNorm`. Returns the converted module (``module`` itself unless it is
    a batch norm).
    """
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        return _to_global(module)
    for name, child in module.named_children():
        converted = convert_batchnorm(child, device)
        if converted is not child:
            setattr(module, name, converted)
    return module
