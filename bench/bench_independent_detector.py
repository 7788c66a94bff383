"""An independent check of QA's CNN detector: another network, another training recipe, the same images.

    python bench/bench_independent_detector.py --real data/processed/demo/train/malignant \
        --synthetic data/synthetic/pipeline_demo_gan --report results/pipeline_demo/qa/pipeline_demo/report.json

QA's detectability check trusts one small CNN (quality.checks.cnn_detector). This bench trains a
different one, written apart from it: batch norm, max pooling between blocks, global average pooling,
dropout, random 2-pixel shifts and left-right flips, 5-fold out-of-fold scores, repeated over seeds. Both
folders are loaded by QA's own loader (same size, same resize path), cut to the same number of images.
It prints the out-of-fold AUC per seed, their mean, and, with --report, QA's CNN-view AUC and interval
from that report and the difference. Nothing is written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from torch import nn

from quality.features.image_sets import load_pair, to_unit
from training.core.cli import Parser

ROOT = Path(__file__).resolve().parents[1]


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class OtherCNN(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(block(channels, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2), block(64, 128),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3))
        self.out = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).squeeze(1)


def shifted_and_flipped(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    padded = nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    size = x.shape[-1]
    out = torch.empty_like(x)
    for i in range(len(x)):
        r, c = rng.integers(0, 5, 2)
        out[i] = padded[i, :, r:r + size, c:c + size]
        if rng.random() < 0.5:
            out[i] = out[i].flip(-1)
    return out


def out_of_fold_auc(x: torch.Tensor, y: np.ndarray, seed: int, epochs: int) -> float:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        model = OtherCNN(x.shape[1])
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        labels = torch.from_numpy(y.astype(np.float32))
        for _ in range(epochs):
            model.train()
            for batch in np.array_split(rng.permutation(train), max(1, len(train) // 64)):
                loss = nn.functional.binary_cross_entropy_with_logits(
                    model(shifted_and_flipped(x[batch], rng)), labels[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        model.eval()
        with torch.no_grad():
            scores[test] = model(x[test]).numpy()
    return float(roc_auc_score(y, scores))


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--real", required=True)
    p.add_argument("--synthetic", required=True)
    p.add_argument("--report", help="QA's report.json for the same folders: compare with its CNN view")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--max_images", type=int, default=500, help="per set (QA's CNN view uses up to 500)")
    args = p.parse_args()
    real, synthetic = load_pair(args.real, args.synthetic)
    n = min(len(real.images), len(synthetic.images), args.max_images)
    pick = np.random.default_rng(0)
    x = np.concatenate([to_unit(real.images)[pick.choice(len(real.images), n, replace=False)],
                        to_unit(synthetic.images)[pick.choice(len(synthetic.images), n, replace=False)]])
    x, y = torch.from_numpy(x) * 2 - 1, np.repeat([0, 1], n)
    aucs = []
    for seed in args.seeds:
        start = time.perf_counter()
        aucs.append(out_of_fold_auc(x, y, seed, args.epochs))
        print(f"seed {seed}: out-of-fold AUC {aucs[-1]:.3f} ({n} images per set, {time.perf_counter() - start:.0f} s)",
              flush=True)
    line = f"independent CNN: mean AUC {np.mean(aucs):.3f} over seeds {args.seeds} (range {min(aucs):.3f}-{max(aucs):.3f})"
    if args.report:
        import json

        cnn = json.loads(Path(args.report).read_text())["detectability"]["views"]["cnn"]
        line += (f"; QA's CNN view {cnn['auc']:.3f} [{cnn['ci_low']:.3f}, {cnn['ci_high']:.3f}]; "
                 f"difference {cnn['auc'] - np.mean(aucs):+.3f}")
    print(line)


if __name__ == "__main__":
    main()
