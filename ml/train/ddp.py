"""The process group a trainer runs in: one process, or torchrun's RANK/WORLD_SIZE/LOCAL_RANK.

gloo on CPU, nccl on CUDA. `DistEnv.from_environment()` reads torchrun's variables (or their
absence) and `setup()` initialises the process group; helpers all-reduce metrics and gather
tensors so evaluation sees every rank's samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @staticmethod
    def from_environment(device: str = "auto") -> "DistEnv":
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", 0))
        return DistEnv(rank, world, local, pick_device(device, local))

    def setup(self) -> None:
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)

    def teardown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a float over ranks (itself when not distributed)."""
        if not (self.distributed and dist.is_initialized()):
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def sum(self, value: float) -> float:
        if not (self.distributed and dist.is_initialized()):
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return float(t.item())

    def broadcast_buffers(self, module: torch.nn.Module, src: int = 0) -> None:
        """Give every rank rank `src`'s buffers (BatchNorm running statistics): each rank's last
        training forward updated its own, so evaluate or save only after this."""
        if not (self.distributed and dist.is_initialized()):
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src)

    def gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a tensor's rows from every rank (rows may differ in number), rank order."""
        if not (self.distributed and dist.is_initialized()):
            return tensor
        dev = self._comm_device()
        local = tensor.to(dev).contiguous()
        n = torch.tensor([local.shape[0]], device=dev)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(sizes, n)
        biggest = int(max(s.item() for s in sizes))
        padded = torch.zeros((biggest, *local.shape[1:]), dtype=local.dtype, device=dev)
        padded[: local.shape[0]] = local
        parts = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(tensor.device)

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' takes CUDA when present (one GPU per local rank), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from ml.errors import ConfigError
            raise ConfigError("device: cuda was asked for but no CUDA device is visible; "
                              "use device: auto or cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)
