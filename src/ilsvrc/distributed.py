"""Several processes, one model: PyTorch DistributedDataParallel under torchrun.

``torchrun --nproc_per_node=N -m ilsvrc train ...`` starts N processes (and
``--nnodes``/``--rdzv-endpoint`` spread them over machines); each one sees
RANK, LOCAL_RANK and WORLD_SIZE. Every rank takes its share of each global
batch (the recipe's batch size is the global one, so the learning rate
stays the recipe's), DDP averages the gradients, and rank 0 alone writes logs
and checkpoints. Without torchrun, ``World()`` is a world of one and every
function here does nothing.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    """This process's place among the torchrun processes (one of one without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owned: bool = False  # whether join() made the process group (and leave() should end it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over all ranks (in place)."""
        if self.distributed:
            dist.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def join(device: torch.device) -> World:
    """Join the process group that torchrun describes, if any."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        world.owned = True
    return world


def leave(world: World) -> None:
    """End the process group if ``join`` made it (a caller's own group stays)."""
    if world.owned and dist.is_initialized():
        dist.destroy_process_group()
