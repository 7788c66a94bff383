"""Export a trained generator or classifier for deployment: TorchScript, or ONNX (optional dependency).

    python training/export.py --checkpoint results/gan/demo_gan/best_generator.pth --format torchscript
    python training/export.py --checkpoint results/classifiers/<name>/run_000/seed_0/best_model.pth --format onnx

A generator maps latents z (B, z_dim) to images in [-1, 1], (B, C, S, S) (a conditional one takes z
followed by a one-hot class; an InfoGAN's z ends with its codes); a classifier maps
images in [-1, 1] to class probabilities (B, K). The file is checked after writing: it is loaded
back and its outputs must match PyTorch's within 1e-4. A `<file>.json` beside it says what goes in
and out (shapes, class names, scaling). An existing file is replaced only with --overwrite, and the
checkpoint itself never.
"""

from __future__ import annotations

import sys

from training.core.cli import Parser
from training.core.errors import run_cli
from training.deploy.graph_export import EXPORTERS, export


def main(argv: list[str] | None = None) -> int:
    p = Parser(__doc__)
    p.add_argument("--checkpoint", required=True, help="a generator (best/final_generator.pth) or classifier (best_model.pth)")
    p.add_argument("--format", choices=sorted(EXPORTERS), required=True)
    p.add_argument("--output_file", "--out", help="default: the checkpoint's path with .pt (torchscript) or .onnx")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (never the checkpoint itself)")
    args = p.parse_args(argv)
    out, difference = export(args.checkpoint, args.format, args.output_file, overwrite=args.overwrite)
    check = ("not checked (install onnxruntime to check)" if difference is None
             else f"outputs match PyTorch within {difference:.1e}")
    print(f"wrote {out} and {out.name}.json; {check}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
