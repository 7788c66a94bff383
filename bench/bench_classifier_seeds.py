"""Would a batched ensemble train an arm's seeds faster? One training step of S classifiers, three ways
(four with --compile).

    python bench/bench_classifier_seeds.py                      # the demo pipeline's arms: cnn width 8, 32 px, 3 seeds
    python bench/bench_classifier_seeds.py --seeds 5 --width 16 --threads 2

Each way takes the same S steps (forward, weighted cross-entropy, backward, AdamW) on batches of the
same shape, random images (a step's time does not depend on what the pixels show):
  sequential  S models one after another: what train_classifier does today
  ensemble    the S models' weights stacked (torch.func.stack_module_state) and run as one batched
              model under torch.func.vmap, one AdamW over the stacked weights (elementwise, so it is
              S independent AdamWs); the field's way of training many small models at once
  bf16        sequential under CPU/CUDA bf16 autocast: faster where the CPU has AMX/AVX-512 bf16 units,
              but other numbers than the fp32 runs a study records, so listed for reference only
  compiled    with --compile: sequential with each model under torch.compile (inductor's C++ kernels;
              needs a C++ compiler); its first step, which compiles, is printed beside it
Before timing, the ensemble's gradients are checked against the S models' own from the same weights and
batch (the largest difference is printed), so the ways compare the same computation.
The last line: `ensemble_speedup=<sequential / ensemble> bf16_speedup=<sequential / bf16>`, and with
--compile ` compile_speedup=<sequential / compiled>`.
"""

from __future__ import annotations

import copy
import time
import warnings
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from training.classify.networks import build_classifier
from training.core.cli import Parser


def models(seeds: int, width: int, image_size: int, channels_last: bool) -> list[torch.nn.Module]:
    """S freshly initialised `cnn` classifiers (2 classes, RGB), each from its own seed."""
    out = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        net = build_classifier(SimpleNamespace(arch="cnn", width=width, dropout=0.0, pretrained=None), 3, image_size, 2)
        out.append(net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format))
    return out


class Sequential:
    """S models, S optimisers: one step each."""

    def __init__(self, nets: list[torch.nn.Module], bf16: bool = False, compiled: bool = False):
        self.optimisers = [torch.optim.AdamW(n.parameters(), lr=1e-3) for n in nets]
        self.nets, self.bf16 = [torch.compile(n) for n in nets] if compiled else nets, bf16

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for net, optimiser, xs, ys in zip(self.nets, self.optimisers, x, y):
            with torch.autocast(xs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = F.cross_entropy(net(xs), ys)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()


class Ensemble:
    """The S models as one: stacked weights and buffers, a vmapped forward, one AdamW."""

    def __init__(self, nets: list[torch.nn.Module]):
        params, self.buffers = stack_module_state(nets)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")
        self.optimiser = torch.optim.AdamW(list(self.params.values()), lr=1e-3)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(S, B, classes): model s on batch x[s]."""
        return vmap(lambda p, b, xs: functional_call(self.base, (p, b), (xs,)), randomness="different")(
            self.params, self.buffers, x)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        logits = self.logits(x)
        # The sum of the S mean losses: each model's gradient is that of its own loss alone.
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()


def gradient_difference(args, x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest |gradient difference| between the ensemble and S sequential models from the same weights and
    batch, relative to the largest gradient: the two ways compute the same thing up to float rounding."""
    seq, ens = Sequential(models(args.seeds, args.width, args.image_size, False)), \
        Ensemble(models(args.seeds, args.width, args.image_size, False))
    for net, xs, ys in zip(seq.nets, x, y):
        F.cross_entropy(net(xs), ys).backward()
    logits = ens.logits(x)
    (F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]).backward()
    pairs = [(dict(net.named_parameters())[name].grad, ens.params[name].grad[i])
             for i, net in enumerate(seq.nets) for name in ens.params]
    return max((a - b).abs().max().item() for a, b in pairs) / max(a.abs().max().item() for a, _ in pairs)


def ms_per_step(way, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[float, float]:
    """(ms per timed step, seconds of the first step, where torch.compile compiles)."""
    start = time.perf_counter()
    way.step(x, y)
    first_step_s = time.perf_counter() - start
    for _ in range(3):                                  # warm-up: allocator, oneDNN kernel choice
        way.step(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        way.step(x, y)
    return (time.perf_counter() - start) / steps * 1000, first_step_s


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--width", type=int, default=8, help="model.width (the demo pipeline's arms: 8)")
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="the pipeline trains each arm on one thread")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--compile", action="store_true", help="also time the models under torch.compile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # vmap's note that adaptive_avg_pool2d takes a slower path: measured here, with the rest.
    warnings.filterwarnings("ignore", message="There is a performance drop")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.seeds, args.batch_size, 3, args.image_size, args.image_size, generator=generator) * 2 - 1
    y = torch.randint(0, 2, (args.seeds, args.batch_size), generator=generator)
    difference = gradient_difference(args, x, y)
    x_cl = torch.stack([xs.contiguous(memory_format=torch.channels_last) for xs in x])
    new = lambda: models(args.seeds, args.width, args.image_size, True)
    ways = {"sequential": Sequential(new()), "ensemble": Ensemble(new()), "bf16": Sequential(new(), bf16=True)}
    if args.compile:
        ways["compiled"] = Sequential(new(), compiled=True)
    timed = {name: ms_per_step(way, x if name == "ensemble" else x_cl, y, args.steps) for name, way in ways.items()}
    times = {name: ms for name, (ms, _) in timed.items()}
    print(f"{args.seeds} cnn classifiers, width {args.width}, {args.image_size} px, batch {args.batch_size}, "
          f"{args.threads} thread(s), torch {torch.__version__}; the ensemble's gradients against the models' own: "
          f"largest difference {difference:.1e} of the largest gradient")
    for way, (ms, first_step_s) in timed.items():
        print(f"  {way:<11} {ms:7.1f} ms per step of all {args.seeds} models (the first step {first_step_s:.1f} s)")
    print(f"ensemble_speedup={times['sequential'] / times['ensemble']:.2f} "
          f"bf16_speedup={times['sequential'] / times['bf16']:.2f}"
          + (f" compile_speedup={times['sequential'] / times['compiled']:.2f}" if args.compile else ""))


if __name__ == "__main__":
    main()
