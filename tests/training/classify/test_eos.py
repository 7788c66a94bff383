"""EOS: synthetic features on segments to nearest enemies (checked against scikit-learn's neighbours),
balanced counts, determinism, and a head-only retraining that never lowers val AUC."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from torch import nn

from training.classify.checkpoint import load_classifier, save_classifier
from training.classify.config import ClassifierConfig
from training.classify.data import LabelledSet
from training.classify.eos import HEAD_EPOCHS, embedding_oversample, eos_features, split_head
from training.classify.networks import build_classifier
from training.classify.scoring import positive_scores
from training.core.config import build
from training.core.errors import ConfigError

CPU = torch.device("cpu")
SIZE = 8


def labelled_set(counts: list[int], seed: int, synthetic: int = 0) -> LabelledSet:
    """uint8 noise images whose class c adds a bright patch at row 2c: separable-ish for a linear head;
    the last `synthetic` images are marked synthetic."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for label, n in enumerate(counts):
        x = torch.randint(0, 160, (n, 3, SIZE, SIZE), generator=g)
        x[:, :, 2 * label:2 * label + 2, :] += 90
        images.append(x.clamp(0, 255).to(torch.uint8))
        labels += [label] * n
    n = len(labels)
    return LabelledSet(torch.cat(images), torch.tensor(labels), [f"{i}.png" for i in range(n)], ["0" * 64] * n, {SIZE}, {SIZE},
                       torch.arange(n) >= n - synthetic)


def tiny_config(tmp_path, arch: str) -> ClassifierConfig:
    return build(ClassifierConfig, {
        "data": {"image_size": SIZE, "channels": 3, "positive_class": "malignant"},
        "model": {"arch": arch, "width": 4, "dropout": 0.5},
        "train": {"batch_size": 16, "lr": 0.01, "seeds": [0], "device": "cpu", "embedding_oversampling": True,
                  "eos_neighbours": 3},
        "output": {"name": "eos", "results_dir": str(tmp_path / "results")}}, "test")


def tiny_sets(counts: list[int], synthetic: int = 0) -> dict[str, LabelledSet]:
    return {"train": labelled_set(counts, 0, synthetic), "val": labelled_set([max(c // 3, 4) for c in counts], 1),
            "test": labelled_set([max(c // 3, 4) for c in counts], 2)}


def val_auc(model: nn.Module, sets: dict[str, LabelledSet], positive: int) -> float:
    return roc_auc_score(sets["val"].labels == positive, positive_scores(model, sets["val"].images, positive, CPU))


def test_eos_features_lie_on_segments_to_their_nearest_enemies():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(80, 5, generator=g)
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 30)          # class 1 is the minority; 0 and 2 are enemies
    k, count = 3, 37
    made = eos_features(features, labels, 1, k, count, torch.Generator().manual_seed(1))
    assert made.shape == (count, 5)

    minority, enemies = features[labels == 1].numpy(), features[labels != 1].numpy()
    neighbours = NearestNeighbors(n_neighbors=k).fit(enemies).kneighbors(minority, return_distance=False)
    for x in made.numpy():
        on_a_segment = False
        for base, near in zip(minority, neighbours):
            for enemy in enemies[near]:
                step = enemy - base
                u = float(np.dot(x - base, step) / np.dot(step, step))
                on_a_segment |= -1e-6 <= u <= 1 + 1e-6 and np.allclose(base + u * step, x, atol=1e-5)
        assert on_a_segment


def test_eos_features_are_deterministic_and_spread_over_every_base():
    g = torch.Generator().manual_seed(0)
    features, labels = torch.randn(30, 4, generator=g), torch.tensor([0] * 24 + [1] * 6)
    draw = lambda seed, count=18: eos_features(features, labels, 1, 5, count, torch.Generator().manual_seed(seed))
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    assert draw(3, 0).shape == (0, 4)
    # With k = 1 each base has a single segment, so the line a made feature lies on names its base.
    made = eos_features(features, labels, 1, 1, 18, torch.Generator().manual_seed(5))
    minority = features[labels == 1]
    nearest = features[labels == 0][torch.cdist(minority, features[labels == 0]).argmin(1)]
    direction = torch.nn.functional.normalize(nearest - minority, dim=1)               # (6, D)
    offsets = made[:, None, :] - minority[None]                                         # (18, 6, D)
    residual = (offsets - (offsets * direction).sum(-1, keepdim=True) * direction).norm(dim=-1)
    assert torch.bincount(residual.argmin(1), minlength=6).tolist() == [3] * 6          # every base 18 / 6 times


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet18"])
def test_split_head_gives_what_the_last_layer_receives(tmp_path, arch):
    config = tiny_config(tmp_path, arch)
    model = build_classifier(config.model, 3, SIZE, 2).eval()
    features, head = split_head(model)
    x = torch.rand(5, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        f = features(x)
        assert f.shape == (5, head.in_features)
        assert torch.allclose(head(f), model(x))


def test_split_head_refuses_a_model_without_a_last_linear_layer():
    with pytest.raises(ConfigError, match="ending in a linear layer"):
        split_head(nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.ReLU()))


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet18"])
def test_embedding_oversample_retrains_only_the_head_and_never_lowers_val_auc(tmp_path, arch):
    config, sets = tiny_config(tmp_path, arch), tiny_sets([40, 8])
    torch.manual_seed(0)
    model = build_classifier(config.model, 3, SIZE, 2)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_auc = val_auc(model, sets, 1)

    model, info = embedding_oversample(model, config, sets, 1, seed=0, device=CPU)

    _, head = split_head(model)
    head_keys = {k for k, p in model.named_parameters() if p is head.weight or p is head.bias}
    assert len(head_keys) == 2
    after_state = model.state_dict()
    assert {k: v.shape for k, v in after_state.items()} == {k: v.shape for k, v in before_state.items()}
    for key in before_state.keys() - head_keys:                          # the body, BN statistics included
        assert torch.equal(after_state[key], before_state[key]), key
    assert info["minority_count"] == 8 and info["majority_count"] == 40 and info["synthetic_count"] == 32
    assert info["feature_dim"] == head.in_features and info["head_epochs"] == HEAD_EPOCHS
    assert info["val_auc_before"] == pytest.approx(before_auc)
    assert info["val_auc_after"] >= info["val_auc_before"]
    assert val_auc(model, sets, 1) == pytest.approx(info["val_auc_after"]) and val_auc(model, sets, 1) >= before_auc
    if info["best_head_epoch"]:
        assert any(not torch.equal(after_state[k], before_state[k]) for k in head_keys)


def test_embedding_oversample_improves_a_poor_head_is_deterministic_and_saves(tmp_path):
    config, sets = tiny_config(tmp_path, "cnn"), tiny_sets([40, 8])

    def run(seed: int) -> tuple[nn.Module, dict]:
        torch.manual_seed(0)
        model = build_classifier(config.model, 3, SIZE, 2)
        with torch.no_grad():                 # a head that ranks the classes backwards: EOS must fix it
            split_head(model)[1].weight.mul_(-1)
        return embedding_oversample(model, config, sets, 1, seed=seed, device=CPU)

    model, info = run(0)
    assert info["val_auc_after"] > info["val_auc_before"] and info["best_head_epoch"] > 0
    again, _ = run(0)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())

    path = tmp_path / "best_model.pth"
    save_classifier(path, model, config, ["benign", "malignant"], 1, threshold=0.5, seed=0, best_epoch=1)
    loaded, _ = load_classifier(path)
    assert np.array_equal(positive_scores(loaded, sets["val"].images, 1, CPU),
                          positive_scores(model, sets["val"].images, 1, CPU))


def test_multi_class_balances_the_positive_class_to_the_largest_real_class():
    sets = tiny_sets([30, 6, 12 + 5], synthetic=5)          # 5 synthetic images of class 2: not EOS's to use
    config = build(ClassifierConfig, {"model": {"arch": "mlp", "width": 4}, "data": {"image_size": SIZE},
                                      "train": {"eos_neighbours": 4}}, "test")
    torch.manual_seed(0)
    model = build_classifier(config.model, 3, SIZE, 3)
    _, info = embedding_oversample(model, config, sets, 1, seed=0, device=CPU)
    assert (info["minority_count"], info["majority_count"], info["synthetic_count"]) == (6, 30, 24)
    sets = tiny_sets([12, 6, 30], synthetic=20)             # 10 real images of class 2 remain: 12 is the largest
    _, info = embedding_oversample(model, config, sets, 1, seed=0, device=CPU)
    assert (info["minority_count"], info["majority_count"], info["synthetic_count"]) == (6, 12, 6)
    assert info["val_auc_after"] >= info["val_auc_before"]
