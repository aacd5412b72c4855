"""torch.distributed in one place: this process's rank and world size, joining the process group that
torchrun describes (nccl on GPU, gloo on CPU), barriers and gathering to rank 0. Everything works
unchanged in a single process."""

from __future__ import annotations

import os
from typing import Any


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them (0, 1, 0 without torchrun)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init(use_cuda: bool) -> None:
    """Join the process group when torchrun started several processes (no-op otherwise)."""
    import torch.distributed as dist

    if env_world()[1] > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def init_for_eval(device: str | None) -> str | None:
    """Under torchrun: join the group, pick this rank's GPU, and split the CPU threads between the local
    ranks. Returns the device this rank must use (``cuda:<local rank>``), or None to keep the spec's."""
    if env_world()[1] <= 1:
        return None
    import torch

    _, world, local = env_world()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    use_cuda = torch.cuda.is_available() and (device in (None, "auto") or str(device).startswith("cuda"))
    init(use_cuda)
    if use_cuda:
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return None


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_lists(items: list[Any]) -> list[Any] | None:
    """Every rank's list, concatenated in rank order, on rank 0 (None on other ranks)."""
    rank, world = rank_world()
    if world == 1:
        return list(items)
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(items, gathered, dst=0)
    if rank != 0:
        return None
    return [x for part in gathered for x in part]  # type: ignore[union-attr]
