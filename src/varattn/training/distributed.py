"""Data-parallel training across processes (torchrun), read from torchrun's environment variables.

Every process builds the same global batch from the same seeded batcher and trains on its share
(``indices[rank::world]``). Each process scales its mean loss by its share of the global token count,
so the gradient DDP averages equals the gradient of the global batch's mean loss: the same update as
one process on the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The process's place in a torchrun job; joins the process group (NCCL on CUDA, else gloo)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    world = World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend)
    return world


def shard(indices: np.ndarray, world: World) -> tuple[np.ndarray, bool]:
    """This process's part of a global batch; ``(part, empty)``. A process whose part would be empty
    gets one pair to keep the collective calls in step, and must weigh its loss by zero."""
    part = indices[world.rank :: world.size]
    if len(part) == 0:
        return indices[:1], True
    return part, False


def global_sum(value: int | float, world: World, device: torch.device) -> float:
    if not world.distributed:
        return float(value)
    total = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item())


def gather_rng(world: World, sampler: torch.Generator) -> list[dict[str, torch.Tensor]] | None:
    """Every process's RNG states (CPU, its CUDA device, the sampler), gathered on all ranks; None for
    one process (the checkpoint then saves the states of this process directly)."""
    if not world.distributed:
        return None
    mine = {"cpu": torch.get_rng_state(), "sampler": sampler.get_state()}
    if torch.cuda.is_available():
        mine["cuda"] = torch.cuda.get_rng_state()
    states: list = [None] * world.size
    dist.all_gather_object(states, mine)
    return states


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def leave(world: World) -> None:
    """Leave the process group once every process is done (a process that exits with gloo's threads
    still running may abort at exit)."""
    if world.distributed and dist.is_initialized():
        barrier(world)
        dist.destroy_process_group()
