"""TorchScript and ONNX export of saved generators and classifiers (training/export.py is the command).

`export` rebuilds the model from its checkpoint, wraps it so the exported graph has one tensor input
and output (a conditional G takes z followed by a one-hot class; a classifier returns probabilities),
writes it beside the destination, loads it back and checks its outputs against PyTorch within TOLERANCE,
only then moves it into place, and writes a `<file>.json` that says what goes in and out. An existing
file is replaced only when asked (`overwrite`), and the checkpoint being exported never.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.classify.checkpoint import CHECKPOINT_FORMAT, load_classifier
from training.core import atomic
from training.core.checkpoint_io import load_checkpoint
from training.core.errors import DataError, UserError
from training.core.outputs import refuse_output_inside_dataset
from training.gan.checkpoint import GENERATOR_FORMAT, load_generator
from training.gan.latents import LatentSpec, draw

TOLERANCE = 1e-4


class OneHotConditioned(torch.nn.Module):
    """A conditional generator with one input, z followed by the one-hot class: every exporter and
    runtime handles a single float tensor, and the sidecar JSON says how to build it."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.z_dim = model, model.z_dim

    def forward(self, z_and_class: torch.Tensor) -> torch.Tensor:
        return self.model(z_and_class[:, :self.z_dim], z_and_class[:, self.z_dim:].argmax(1))


class Probabilities(torch.nn.Module):
    """A classifier whose output is softmax probabilities, which is what a deployment wants."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images), dim=1)


def load_for_export(path: Path) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    """The model in eval mode, an example input, and what the sidecar JSON says about it."""
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    state = load_checkpoint(path)
    kind = state.get("format") if isinstance(state, dict) else None
    if kind == GENERATOR_FORMAT:
        model, record = load_generator(path)
        if getattr(model, "noise_sizes", None):
            raise UserError(f"{path}: a generator with noise inputs (model.g_noise) draws each image's noise from a "
                            "hash of its z, which a traced graph cannot do; export is not supported for it")
        spec = model.latent
        example = draw(spec, 4, torch.Generator().manual_seed(0))
        info = {"kind": "generator", "class": record["class_name"], "input": "z", "input_shape": ["batch", spec.z_dim],
                "input_distribution": describe(spec), "output": "images",
                "output_shape": ["batch", model.channels, model.image_size, model.image_size],
                "output_range": [-1, 1], "to_uint8": "(x + 1) * 127.5, rounded"}
        if spec.num_classes:
            names = record["class_names"]
            example = torch.cat([example, torch.nn.functional.one_hot(torch.arange(4) % len(names), len(names))], 1)
            info.update(input="z followed by the one-hot class", input_shape=["batch", spec.z_dim + len(names)],
                        class_names=names)
            model = OneHotConditioned(model).eval()
        return model, example, info
    if kind == CHECKPOINT_FORMAT:
        model, record = load_classifier(path)
        data = record["config"]["data"]
        example = torch.rand(4, data["channels"], data["image_size"], data["image_size"],
                             generator=torch.Generator().manual_seed(0)) * 2 - 1
        return Probabilities(model).eval(), example, {
            "kind": "classifier", "class_names": record["class_names"], "positive_class": record["positive_class"],
            "threshold": record["threshold"], "input": "images",
            "input_shape": ["batch", data["channels"], data["image_size"], data["image_size"]],
            "input_range": [-1, 1], "from_uint8": "x / 127.5 - 1", "output": "probabilities",
            "output_shape": ["batch", len(record["class_names"])]}
    raise DataError(f"{path} is neither a generator (best/final_generator.pth) nor a classifier (best_model.pth)")


def describe(spec: LatentSpec) -> str:
    parts = [f"{spec.noise_dim} standard normal"]
    if spec.info_categories:
        parts.append(f"one-hot of {spec.info_categories} categories (InfoGAN code)")
    if spec.info_continuous:
        parts.append(f"{spec.info_continuous} uniform in [-1, 1] (InfoGAN codes)")
    return ", then ".join(parts)


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, out: Path) -> float:
    """Trace, save to `out`, load back; returns the largest output difference to PyTorch."""
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        traced.save(str(out))
        loaded = torch.jit.load(str(out))
        probe = torch.cat([example, example.flip(0)])               # another batch size than the trace's
        return float((loaded(probe) - model(probe)).abs().max())


def export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path) -> float | None:
    """Export to `out` with a dynamic batch axis; returns the difference to PyTorch when onnxruntime is installed."""
    try:    # optional: only ONNX export needs these packages
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise UserError("ONNX export needs the onnx package (pip install onnx), or use --format torchscript") from None
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(out), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probe = torch.cat([example, example.flip(0)])
    got = session.run(None, {"input": probe.numpy()})[0]
    with torch.no_grad():
        return float(np.abs(got - model(probe).numpy()).max())


EXPORTERS = {"torchscript": (export_torchscript, ".pt"), "onnx": (export_onnx, ".onnx")}


def check_destination(checkpoint: Path, out: Path, overwrite: bool) -> None:
    """Refuse, before anything is written, a destination that is the checkpoint itself (or its sidecar would be),
    that lies inside a dataset, or that exists without `overwrite`."""
    sidecar = out.with_name(out.name + ".json")
    for target in (out, sidecar):
        if target.resolve() == checkpoint.resolve() or (target.exists() and checkpoint.exists()
                                                         and target.samefile(checkpoint)):
            raise UserError(f"--out {out} would replace the checkpoint being exported ({checkpoint}); "
                            "give another file name")
    refuse_output_inside_dataset(out, "--out", "a folder of its own, e.g. results/export")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the file to write, e.g. {out / checkpoint.with_suffix('.pt').name}")
    existing = [str(p) for p in (out, sidecar) if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: pass --overwrite "
                        "to replace, or give another --out")


def export(checkpoint: str | Path, fmt: str, out: str | Path | None = None,
           overwrite: bool = False) -> tuple[Path, float | None]:
    """Export `checkpoint` as `fmt`; returns the file and the checked output difference (None: unchecked).

    An existing file is replaced only with `overwrite`, and the checkpoint itself never.
    """
    checkpoint = Path(checkpoint)
    exporter, suffix = EXPORTERS[fmt]
    out = Path(out) if out else checkpoint.with_suffix(suffix)
    check_destination(checkpoint, out, overwrite)
    model, example, info = load_for_export(checkpoint)
    with atomic.atomic_path(out) as tmp:      # written and checked beside `out`; replaces it only when it passes
        difference = exporter(model, example, tmp)
        if difference is not None and difference > TOLERANCE:
            raise UserError(f"the exported {fmt} model differs from PyTorch by {difference:.2e} (> {TOLERANCE}); "
                            f"not kept{' (the existing file is unchanged)' if out.exists() else ''}")
    atomic.write_json(out.with_name(out.name + ".json"), {**info, "format": fmt, "source": str(checkpoint),
                                                          "max_difference_to_pytorch": difference})
    return out, difference
