"""Export of generators and classifiers: the exported file reproduces PyTorch's outputs."""

import json

import pytest
import torch

from tests.training.synthesis.test_sampling import make_generator
from training.core.errors import DataError, UserError
from training.deploy.graph_export import export
from training.export import main as export_main


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_generator_torchscript_matches_pytorch(tmp_path, padding):
    ckpt = make_generator(tmp_path / "g.pth", 0, upsample="bilinear", g_padding=padding)
    out, difference = export(ckpt, "torchscript")
    assert out == tmp_path / "g.pt" and difference < 1e-5
    loaded = torch.jit.load(str(out))
    assert loaded(torch.randn(3, 16)).shape == (3, 3, 32, 32)          # any batch size
    info = json.loads((tmp_path / "g.pt.json").read_text())
    assert info["kind"] == "generator" and info["input_shape"] == ["batch", 16]


def test_classifier_torchscript_gives_probabilities(tiny_demo, tmp_path):
    from training.classify.config import ClassifierConfig
    from training.classify.loop import train_classifier
    from training.core.config import build

    raw = {"data": {"train_dir": str(tiny_demo / "train"), "val_dir": str(tiny_demo / "val"),
                    "test_dir": str(tiny_demo / "test"), "image_size": 16},
           "model": {"arch": "cnn", "width": 4}, "train": {"epochs": 1, "seeds": [0], "device": "cpu"},
           "output": {"name": "export", "results_dir": str(tmp_path / "results")}}
    ckpt = train_classifier(build(ClassifierConfig, raw, "test")) / "seed_0" / "best_model.pth"
    out, difference = export(ckpt, "torchscript", tmp_path / "classifier.pt")
    assert difference < 1e-5
    probs = torch.jit.load(str(out))(torch.rand(5, 3, 16, 16) * 2 - 1)
    assert probs.shape == (5, 2) and torch.allclose(probs.sum(1), torch.ones(5))
    assert json.loads((tmp_path / "classifier.pt.json").read_text())["class_names"] == ["benign", "malignant"]


def test_onnx_is_exported_and_checked_or_refused_clearly(tmp_path):
    ckpt = make_generator(tmp_path / "g.pth", 0, upsample="bilinear", g_padding="reflect")   # the demo's G
    try:
        import onnx  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="needs the onnx package"):
            export(ckpt, "onnx")
        return
    out, difference = export(ckpt, "onnx")
    assert out.suffix == ".onnx" and out.is_file()
    assert difference is None or difference < 1e-4


def test_a_generator_with_noise_inputs_is_refused_clearly(tmp_path):
    ckpt = make_generator(tmp_path / "g.pth", 0, upsample="bilinear", g_noise=True)
    with pytest.raises(UserError, match="model.g_noise"):
        export(ckpt, "torchscript")
    assert not (tmp_path / "g.pt").exists()


def test_foreign_files_are_refused(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="neither a generator"):
        export(tmp_path / "other.pth", "torchscript")
    with pytest.raises(DataError, match="checkpoint not found"):
        export_main(["--checkpoint", str(tmp_path / "missing.pth"), "--format", "torchscript"])


def test_conditional_generator_exports_with_a_one_hot_class(tmp_path):
    from training.core.config import build
    from training.gan.checkpoint import load_generator, save_generator
    from training.gan.config import GANConfig
    from training.gan.networks import build_generator

    config = build(GANConfig, {"data": {"image_size": 32, "channels": 1, "train_on": "all_classes"},
                               "model": {"conditional": True, "z_dim": 8, "g_channels": 8}}, "test")
    torch.manual_seed(0)
    ckpt = tmp_path / "cond.pth"
    save_generator(ckpt, build_generator(config.model, config.data, 2).eval(), config, epoch=1,
                   class_names=["benign", "malignant"])
    out, difference = export(ckpt, "torchscript")
    assert difference < 1e-5
    info = json.loads((tmp_path / "cond.pt.json").read_text())
    assert info["input_shape"] == ["batch", 10] and info["class_names"] == ["benign", "malignant"]
    G, _ = load_generator(ckpt)
    z = torch.randn(2, 8)
    exported = torch.jit.load(str(out))(torch.cat([z, torch.tensor([[0.0, 1.0], [0.0, 1.0]])], 1))
    assert torch.allclose(exported, G(z, torch.tensor([1, 1])), atol=1e-5)
