"""Data parallelism under torchrun: `torchrun --nproc-per-node N -m svd.cli train --stage S`.

torchrun sets RANK / WORLD_SIZE / MASTER_ADDR; one process (WORLD_SIZE unset) is world size 1 and
touches no process group. Each rank draws every random number of a step for the whole global batch
(the loop's generator is seeded alike on every rank) and computes its slice of it; DDP averages the
gradients. A step is thereby the step one process takes on the whole batch, up to the order of float
sums, and the random stream does not depend on the number of ranks. Rank 0 alone logs and writes.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


def world() -> tuple[int, int]:
    """(rank, world size), joining the process group torchrun describes on first use."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), size


def is_main() -> bool:
    return world()[0] == 0


def part(batch_size: int) -> slice:
    """This rank's share of a global batch: equal, contiguous shares, so the mean of the ranks'
    mean losses is the global mean loss."""
    rank, size = world()
    if batch_size % size:
        raise ValueError(f"batch size {batch_size} does not split evenly over {size} ranks")
    n = batch_size // size
    return slice(rank * n, (rank + 1) * n)


def wrap(module: nn.Module, find_unused: bool = False) -> nn.Module:
    """The module under DDP when there are several ranks; itself otherwise. `find_unused` for a
    module whose forward leaves some parameters out (diffusers' temporal VAE decoder never calls
    its mid-block attention), at the cost of a graph walk per step."""
    if world()[1] == 1:
        return module
    return DistributedDataParallel(module, find_unused_parameters=find_unused)


def mean(x: Tensor) -> float:
    """The mean of a scalar over the ranks: the loss of the global batch, for logging."""
    x = x.detach().clone()
    if world()[1] > 1:
        dist.all_reduce(x)
        x /= world()[1]
    return float(x)
