"""Where a GAN run keeps its files: one folder per run, laid out here and nowhere else.

    <results_dir>/gan/<name>/          config.yaml, run_info.json
        final_generator.pth            the generator (EMA weights) at the last epoch
        best_generator.pth             the checkpoint the screen chose (metrics.json says which and why)
        lowest_fid_generator.pth       the lowest FID whatever the screen says
        metrics.json, losses.json      every evaluation; the losses per epoch
        fidelity_curve.png, loss_curves.png, final_samples.png
        checkpoints/                   checkpoint_epoch_NNNN.pth: full training state, for --resume
        samples/                       epoch_NNNN.png sample grids (fixed latents)
        tensorboard/                   events, when output.tensorboard is on
    <results_dir>/cache/               feature caches shared by every run and by QA (content-keyed)

Bulk synthesis writes elsewhere (`output.synthetic_dir`/<name>/ by default), and that folder holds only
synthetic images, their manifest and its preview: nothing a run writes lands among its samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.gan.config import GANConfig

GAN_RUNS = "gan"                      # <results_dir>/gan/<name>/
CACHE = "cache"                       # <results_dir>/cache/
FINAL_GENERATOR = "final_generator.pth"
BEST_GENERATOR = "best_generator.pth"
LOWEST_FID_GENERATOR = "lowest_fid_generator.pth"
GENERATOR_FILES = (FINAL_GENERATOR, BEST_GENERATOR, LOWEST_FID_GENERATOR)
METRICS = "metrics.json"
LOSS_HISTORY = "losses.json"
FIDELITY_CURVE = "fidelity_curve.png"
LOSS_CURVES = "loss_curves.png"
FINAL_SAMPLES = "final_samples.png"


@dataclass(frozen=True)
class GANRun:
    """The folders and files of one GAN run, and the synthetic folder bulk synthesis writes to by default."""

    root: Path
    cache: Path
    synthetic: Path

    @classmethod
    def of(cls, config: GANConfig) -> GANRun:
        results, name = Path(config.output.results_dir), config.output.name
        return cls(results / GAN_RUNS / name, results / CACHE, Path(config.output.synthetic_dir) / name)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def file(self, name: str) -> Path:
        """A file at the run's top level (one of this module's constants)."""
        return self.root / name

    def generator(self) -> Path | None:
        """The generator to sample from: best_generator.pth, else final_generator.pth; None before training ends."""
        for name in (BEST_GENERATOR, FINAL_GENERATOR):
            if (self.root / name).is_file():
                return self.root / name
        return None
