"""Data parallelism under torchrun: `torchrun --nproc-per-node N -m svd.cli train --stage S`.

torchrun sets RANK / WORLD_SIZE / MASTER_ADDR; one process (WORLD_SIZE unset) is world size 1 and
touches no process group. Each rank draws every random number of a step for the whole global batch
(the loop's generator is seeded alike on every rank) and computes its slice of it; DDP averages the
gradients. A step is thereby the step one process takes on the whole batch, up to the order of float
sums, and the random stream does not depend on the number of ranks. Rank 0 alone logs and writes.

train.compute.parallel: fsdp shards the denoiser instead (FSDP2, torch's fully_shard): each rank
holds 1/N of every weight, gradient and AdamW state, and a block's weights are gathered only for its
forward and backward, so a model N times larger than one device's memory trains. State that leaves
the run (resume points, the saved model) is gathered whole first, by every rank together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger("svd")
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole, on rank 0's CPU; others get {}


def world() -> tuple[int, int]:
    """(rank, world size), joining the process group torchrun describes on first use."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        log.info("rank %d of %d joined the %s process group", dist.get_rank(), size, backend)
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


def shard(net: nn.Module, blocks: Iterable[nn.Module]) -> None:
    """FSDP2 over all ranks, in place: each block a unit gathered for its own forward and backward,
    then the rest of the network. Call before the optimizer is made: it must see the shards."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (world()[1],))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(net, mesh=mesh)


def sharded(net: nn.Module) -> bool:
    return isinstance(net, FSDPModule)


def full_state(net: nn.Module) -> dict[str, Tensor]:
    """The whole state dict; of a sharded network, gathered by every rank together to rank 0's CPU
    (the rank that writes resume points)."""
    return dict(get_model_state_dict(net, options=FULL)) if sharded(net) else net.state_dict()  # type: ignore[arg-type]


def optimizer_state(net: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    return get_optimizer_state_dict(net, opt, options=FULL) if sharded(net) else opt.state_dict()


def load_optimizer_state(net: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    if sharded(net):
        set_optimizer_state_dict(net, opt, state, options=StateDictOptions(full_state_dict=True))
    else:
        opt.load_state_dict(state)


def gather(x: Tensor) -> Tensor:
    """A whole tensor from a shard (every rank together); a plain tensor as it is."""
    return x.full_tensor() if isinstance(x, DTensor) else x


def like(full: Tensor, ref: Tensor) -> Tensor:
    """`full` laid out as `ref`: this rank's shard when `ref` is a shard."""
    if isinstance(ref, DTensor):
        return distribute_tensor(full.to(ref.device), ref.device_mesh, ref.placements)
    return full.to(ref.device)


def unsharded(net: nn.Module) -> nn.Module:
    """A plain copy of a sharded diffusers model with the whole weights on every rank, for saving
    and for whatever follows the stage (every rank together); an unsharded network as it is."""
    if not sharded(net):
        return net
    state = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True))
    plain = type(net).from_config(net.config)  # type: ignore[attr-defined]
    plain.load_state_dict(state)
    return plain


def mean(x: Tensor) -> float:
    """The mean of a scalar over the ranks: the loss of the global batch, for logging."""
    x = x.detach().clone()
    if world()[1] > 1:
        dist.all_reduce(x)
        x /= world()[1]
    return float(x)
