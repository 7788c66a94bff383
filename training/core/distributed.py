"""Data-parallel runs under `torchrun`, on PyTorch's own process groups.

`torchrun --nproc_per_node N script.py ...` starts N copies of a script with RANK, WORLD_SIZE and
LOCAL_RANK set; `init_world` joins them into one process group (gloo on CPU, nccl on CUDA). A plain
`python script.py` is a world of one, and every helper here is then a no-op, so the single-process
code path and the distributed one are the same code.

The conventions every loop follows:
* the global batch (`train.batch_size`) is split evenly, rank r taking the r-th slice of it;
* anything that must agree across ranks (data order, latents) is drawn from seeds that do not
  depend on the rank, anything that should differ (augmentation) from seeds that do;
* gradients are averaged across ranks before each optimiser step;
* only rank 0 writes files, evaluates metrics and prints.
"""

from __future__ import annotations

import copy
import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.core.errors import ConfigError, UserError
from training.core.runtime import resolve_device


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def local_slice(self, global_batch: int, what: str = "train.batch_size") -> slice:
        """This rank's part of a global batch; the batch must split evenly."""
        if global_batch % self.size:
            raise ConfigError(f"'{what}' = {global_batch} does not split evenly over {self.size} processes")
        per_rank = global_batch // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def share(self, global_batch: int) -> slice:
        """This rank's rows of any global batch: `local_slice` when it splits evenly, else near-even
        parts (an epoch's ragged last batch), differing by one row at most."""
        if global_batch % self.size == 0:
            return self.local_slice(global_batch)
        return slice(self.rank * global_batch // self.size, (self.rank + 1) * global_batch // self.size)


def launched_processes() -> int:
    """How many processes torchrun started (WORLD_SIZE); 1 for a plain run. Readable before joining."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_world(device_name: str, timeout_minutes: int = 60) -> tuple[World, torch.device]:
    """Join torchrun's process group when launched by torchrun; returns (world, this process's device)."""
    device = resolve_device(device_name)
    size = launched_processes()
    if size == 1:
        return World(), device
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(f"process {world.local_rank} has no GPU: {torch.cuda.device_count()} visible "
                            "(use --nproc_per_node at most the number of GPUs)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Rank 0 evaluates FID alone while the others wait at their next all-reduce: a generous timeout.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return world, device


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def from_main(value, world: World):
    """Rank 0's `value` on every rank (pickled; for small things such as a metric or a path)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value, world: World) -> list:
    """Every rank's `value` (pickled), on every rank; also waits until all ranks have got here."""
    if not world.distributed:
        return [value]
    parts = [None] * world.size
    dist.all_gather_object(parts, value)
    return parts


def sum_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """`value` summed over ranks (a copy, differentiable; `value` itself when there is one process)."""
    return _SumOverRanks.apply(value) if world.distributed else value


def global_mean(x: torch.Tensor, world: World) -> torch.Tensor:
    """The mean over dim 0 of every rank's rows together, differentiable.

    Every rank gets the same value; the backward all-reduce hands each rank the gradient of its own
    rows times the number of ranks, which `average_gradients` then divides out.
    """
    if not world.distributed:
        return x.mean(0)
    total = sum_over_ranks(torch.cat([x.sum(0), x.new_tensor([len(x)])]), world)
    return total[:-1] / total[-1]


def seed_for(*parts: int) -> int:
    """A 63-bit seed hashed from integers (config seed, epoch, rank, ...), distinct for distinct tuples."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Replace each gradient by its mean over ranks, in one flat all-reduce (as stylegan2-ada does).

    The GAN loops do this by hand rather than through DistributedDataParallel: D runs several forward
    passes per step and the gradient penalty differentiates through D twice, neither of which DDP's
    gradient hooks support.
    """
    if not world.distributed:
        return
    params = [p for p in params if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat)
    flat /= world.size
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p).clone()


def broadcast_module(module: nn.Module, world: World) -> None:
    """Copy rank 0's parameters and buffers to every rank (they start equal by seeding; this makes sure)."""
    if world.distributed:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


class _SumOverRanks(torch.autograd.Function):
    """all-reduce(sum) that autograd can see: the gradient of a sum over ranks is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics span the global batch of every rank.

    torch's SyncBatchNorm does the same on GPUs only; this version works with gloo on CPU too, so a
    2-process run computes what one process with the whole batch computes. The sums are all-reduced
    with an autograd-aware collective, so gradients flow through the other ranks' statistics.
    It adds no state: checkpoints are those of nn.BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.tensor([x.numel() / channels], device=x.device, dtype=torch.float32)
        sums = _SumOverRanks.apply(torch.cat([x.float().sum((0, 2, 3)), (x.float() ** 2).sum((0, 2, 3)), count]))
        total = sums[-1]
        mean = sums[:channels] / total
        var = (sums[channels:2 * channels] / total - mean ** 2).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * total / (total - 1), momentum)   # unbiased, as BN stores
        scale = (self.weight * torch.rsqrt(var + self.eps)).to(x.dtype)
        shift = (self.bias - mean * self.weight * torch.rsqrt(var + self.eps)).to(x.dtype)
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def _swap_batchnorm(module: nn.Module, cls: type) -> nn.Module:
    # GlobalBatchNorm2d adds no attributes to nn.BatchNorm2d, so switching class in place is exact.
    for m in module.modules():
        if type(m) in (nn.BatchNorm2d, GlobalBatchNorm2d):
            m.__class__ = cls
    return module


def global_batchnorm(module: nn.Module, world: World) -> nn.Module:
    """`module` with its BatchNorm2d layers computing global-batch statistics when distributed."""
    return _swap_batchnorm(module, GlobalBatchNorm2d) if world.distributed else module


def local_copy(module: nn.Module) -> nn.Module:
    """A deep copy with ordinary batch norm, for work one rank does alone (sampling, BN re-estimation)."""
    return _swap_batchnorm(copy.deepcopy(module), nn.BatchNorm2d)
