"""The network's generic pieces, beside the ResNet in model.py as timm keeps its ``layers``:
global pooling of timm's kinds, stochastic depth, and gradient checkpointing of one block.

Each follows timm's semantics (timm/layers/adaptive_avgmax_pool.py, timm/layers/drop.py) so
that a recipe written for a timm ResNet trains this one the same way.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["global_pool", "drop_path", "checkpointed"]


def global_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """timm's global pooling kinds (``resnet_zoo.config.POOL_TYPES``): ``[B, C, H, W] -> [B, C]``
    for "avg", "max" and "avgmax" (their mean), ``[B, 2C]`` for "catavgmax" (both, concatenated);
    "" is no pooling: ``x`` itself."""
    if kind == "":
        return x
    if kind == "avg":
        return x.mean(dim=(2, 3))
    peak = x.amax(dim=(2, 3))
    if kind == "max":
        return peak
    mean = x.mean(dim=(2, 3))
    if kind == "avgmax":
        return 0.5 * (mean + peak)
    return torch.cat((mean, peak), dim=1)  # catavgmax; the config admits no other kind


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016), timm's ``drop_path``: in training, each sample's
    residual branch is dropped with probability ``rate`` and kept ones are scaled by
    ``1 / (1 - rate)``, so that the expected output is unchanged; identity otherwise."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


def checkpointed(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` with its activations recomputed in the backward pass (non-reentrant
    ``torch.utils.checkpoint``). The recomputation would update batch-norm running statistics a
    second time; they are put back, so training matches an unchecked run exactly."""
    from torch.utils.checkpoint import checkpoint

    calls = 0

    def run(inp: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1 or not block.training:
            return block(inp)
        saved = [
            (b, b.clone())
            for m in block.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked)
            if b is not None
        ]
        try:
            return block(inp)
        finally:
            with torch.no_grad():
                for buf, value in saved:
                    buf.copy_(value)

    return checkpoint(run, x, use_reentrant=False)
