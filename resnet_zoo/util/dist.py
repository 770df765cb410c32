"""One process or many: what torchrun's environment says (the one place that reads RANK and
WORLD_SIZE), and the few collectives training and feature sets need."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["Dist", "setup_distributed", "rank", "all_reduce_sum", "barrier"]


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


def setup_distributed(device: bool = True) -> Dist:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun) and join the process group.
    ``device``: pick this rank's GPU and NCCL when there is one; ``False``: CPU and gloo (for
    work whose device is the caller's, like a feature set's model)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device and torch.cuda.is_available()
    where = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(where)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank(), world, local_rank, where)


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
