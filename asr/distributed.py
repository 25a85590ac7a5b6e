"""Multi-process training with PyTorch's own engine: process group, rank, DDP wrapping, reductions.

`asr train` run under `torchrun --nproc_per_node N [--nnodes M ...] -m asr train ...` finds
WORLD_SIZE, RANK and LOCAL_RANK in the environment; run plainly it is a single process and every
method here is a no-op. NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def all_true(self, flag: bool) -> bool:
        """True only if flag is True on every rank (so that all ranks skip a bad step together)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0)

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over ranks (for logging a global loss)."""
        if not self.enabled:
            return float(value.detach())
        total = value.detach().reshape(1).float().to(self.device)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes in the environment, if any.

    Under torchrun with CUDA, each process uses GPU LOCAL_RANK regardless of `device`'s index.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(rank=0, world_size=1, device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)
