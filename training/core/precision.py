"""The GPU fast path: autocast precision, loss scaling, channels-last layout, cuDNN and TF32 switches.

Precision, cuDNN and TF32 apply on CUDA only: on CPU a run asked for bf16/fp16 trains in fp32 and says so
once (the options are recorded as requested and as applied). The channels-last layout applies on both:
on CPU it made the demo GAN's training step faster too (docs/benchmarks.md#training).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from training.core.distributed import World, average_gradients

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    device: torch.device
    dtype: torch.dtype | None = None      # autocast dtype; None = fp32
    channels_last: bool = False

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (bf16 has fp32's range and needs none); a pass-through otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images on the device (see `to_device`), in the layout the networks use."""
        x = to_device(x, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`; a CPU tensor bound for CUDA goes through page-locked memory, so the copy
    runs asynchronously. A batch is pinned rather than the whole training tensor: gathering rows
    (`images[idx]`) from a pinned tensor yields ordinary memory again. PyTorch keeps each pinned
    block until its copy has finished, as DataLoader(pin_memory=True) relies on."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def resolve_precision(train, device: torch.device) -> tuple[Precision, dict]:
    """The Precision for `train.precision`/`train.channels_last`, and a record of what was applied
    (with a `note` for the user when options were ignored: print it once).

    Also sets cuDNN benchmarking and TF32 explicitly (both off unless asked for), so a run never
    inherits them from whatever ran before in the process.
    """
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = bool(train.cudnn_benchmark)
        torch.backends.cuda.matmul.allow_tf32 = bool(train.tf32)
        torch.backends.cudnn.allow_tf32 = bool(train.tf32)
    dtype, note = DTYPES[train.precision] if cuda else None, None
    if cuda and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        dtype, note = None, "note: this GPU has no bf16; training in fp32 (train.precision=bf16 ignored)"
    ignored = [f"train.{k}={str(v).lower()}" for k, v in (("precision", train.precision),
                                                          ("cudnn_benchmark", train.cudnn_benchmark), ("tf32", train.tf32))
               if not cuda and v not in ("fp32", False)]
    if ignored:
        note = (f"note: {', '.join(ignored)} {'applies' if len(ignored) == 1 else 'apply'} to CUDA only; on "
                f"{device.type} training runs in fp32")
    applied = Precision(device, dtype, bool(train.channels_last))
    record = {"precision": next(name for name, d in DTYPES.items() if d is dtype),
              "channels_last": applied.channels_last, "cudnn_benchmark": cuda and bool(train.cudnn_benchmark),
              "tf32": cuda and bool(train.tf32), **({"note": note} if note else {})}
    return applied, record


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                   params: list[torch.nn.Parameter], world: World) -> None:
    """Backward, average gradients over ranks, step (skipped by the scaler when fp16 gradients overflowed).

    Gradients are averaged before the scaler checks them, so every rank sees the same overflow
    and all skip or all step: ranks never drift apart.
    """
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler else loss).backward()
    average_gradients(params, world)
    if scaler is None:
        optimizer.step()
        return
    scaler.step(optimizer)
    scaler.update()
