"""bench/bench_classifier_seeds.py compares ways of training an arm's seeds; its ensemble must compute what the
separate models compute, or its timings compare different work."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_classifier_seeds.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_classifier_seeds", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ensemble_computes_what_the_separate_models_compute_and_the_script_prints_its_ratios(capsys, monkeypatch):
    bench = load_bench()
    x, y = torch.rand(2, 6, 3, 8, 8) * 2 - 1, torch.randint(0, 2, (2, 6))
    assert bench.gradient_difference(SimpleNamespace(seeds=2, width=2, image_size=8), x, y) < 1e-4

    def first_conv_after_one_step(batch_of_model_0):
        seq, ens = bench.Sequential(bench.models(2, 2, 8, False)), bench.Ensemble(bench.models(2, 2, 8, False))
        seq.step(x, y)
        ens.step(*batch_of_model_0)
        return seq.nets[0][0].weight, ens.params["0.weight"][0]

    assert torch.allclose(*first_conv_after_one_step((x, y)), atol=2e-4)     # AdamW steps by about lr = 1e-3
    assert not torch.allclose(*first_conv_after_one_step((x.flip(0), y.flip(0))), atol=2e-4)   # it can fail

    monkeypatch.setattr("sys.argv", ["bench_classifier_seeds.py", "--seeds", "2", "--width", "2", "--image_size", "8",
                                     "--batch_size", "6", "--steps", "1"])
    bench.main()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("ensemble_speedup=") and " bf16_speedup=" in last
