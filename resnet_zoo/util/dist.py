"""One process or many: what torchrun's environment says (the one place that reads RANK,
WORLD_SIZE and LOCAL_RANK), and the few collectives training and feature sets need. Which device
a rank uses is :func:`resnet_zoo.device.resolve_device`'s to say; it is passed in here."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["Dist", "setup_distributed", "rank", "local_rank", "all_reduce_sum", "barrier"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def rank() -> int:
    """This process's rank under torchrun (0 alone)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its node under torchrun (0 alone)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def setup_distributed(device: torch.device | None = None) -> Dist:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun) and join the process group:
    NCCL where ``device`` (this rank's, resolved and made current by the caller through
    :mod:`resnet_zoo.device`) is a GPU; gloo on the CPU (``None``: work whose device is not the group's, like a feature
    set's model)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    where = device if device is not None else torch.device("cpu")
    cuda = where.type == "cuda"
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank(), world, local_rank(), where)


def all_reduce_sum(values: list[float], dist: Dist) -> list[float]:
    if dist.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=dist.device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        torch.distributed.barrier()


def shutdown(dist: Dist) -> None:
    if dist.world > 1:
        torch.distributed.destroy_process_group()
