"""No weights file or cache we (or torch-fidelity, for us) read can run code.

Payloads are pickles whose unpickling creates a marker file; every test asserts the marker never appears.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from quality.features.domain_encoder import encoder_cache_path, get_domain_encoder
from quality.features.extractors import DOMAIN, domain_space, inception_space, resolve_feature_space
from quality.features.frechet import create_extractor, fidelity_metrics, real_cache_file, real_cache_name
from quality.run_qa import main as qa_main
from tests.helpers import tiny_gan_raw, write_yaml
from training.core.errors import DataError, run_cli
from training.core.verified_cache import content_digest, digest_path, read_verified
from training.data.folders import load_split
from training.train_dcgan import main as train_main


class Payload:
    """Unpickling this creates `marker`: the proof that code in a file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def payload_file(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"payload": Payload(marker)}, path)
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def domain(tiny_demo, tmp_path_factory):
    cache = tmp_path_factory.mktemp("encoder")
    images, labels, classes = load_split(tiny_demo, "train", 32, 3)
    return domain_space(get_domain_encoder(images, labels, classes, epochs=1, cache_dir=cache)), images


def inception_like_weights(path: Path) -> Path:
    """A state dict with torch-fidelity's Inception keys and shapes (random values: loading is under test)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.save({}, path.with_suffix(".empty"))
    with mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *args, **kwargs: None):
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                            feature_extractor_weights_path=str(path.with_suffix(".empty")))
    torch.save(model.state_dict(), path)
    return path


# --- Inception weights given by the user ---------------------------------------------------------------------

def test_run_qa_refuses_a_pickle_payload_as_inception_weights(tiny_demo, tmp_path, capsys):
    marker, out = tmp_path / "owned", tmp_path / "qa"
    evil = payload_file(tmp_path / "evil.pth", marker)
    synthetic = tmp_path / "synthetic"
    shutil.copytree(tiny_demo / "train" / "benign", synthetic)
    for extractor in ("auto", "inception-v3-compat"):
        code = run_cli(qa_main, ["--real", str(tiny_demo / "train" / "malignant"), "--synthetic", str(synthetic),
                                 "--output_dir", str(out), "--inception_weights", str(evil),
                                 "--feature_extractor", extractor, "--cache_dir", str(tmp_path / "cache")])
        assert code == 2
        assert "refusing to load" in one_error_line(capsys)
        assert not marker.exists() and not out.exists()


def test_train_dcgan_refuses_a_pickle_payload_as_inception_weights(tiny_demo, tmp_path, capsys):
    marker = tmp_path / "owned"
    evil = payload_file(tmp_path / "evil.pth", marker)
    raw = tiny_gan_raw(tiny_demo, tmp_path, train={"epochs": 1})
    raw["metrics"].update(feature_extractor="inception-v3-compat", inception_weights=str(evil))
    assert run_cli(train_main, ["--config", str(write_yaml(tmp_path / "gan.yaml", raw))]) == 2
    assert "refusing to load" in one_error_line(capsys)
    assert not marker.exists()


def test_inception_weights_are_read_as_tensors_and_handed_on_as_a_copy(tmp_path):
    weights = inception_like_weights(tmp_path / "inception.pth")
    space = inception_space(str(weights), allow_download=False)
    assert space.cache_tag.startswith("inception-")        # follows the weights: other weights, other cache
    extractor = create_extractor(space, ["2048"], cuda=False)
    saved = torch.load(weights, weights_only=True)
    assert torch.equal(extractor.state_dict()["fc.weight"], saved["fc.weight"])

    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(DataError, match="is not Inception weights"):
        inception_space(str(tmp_path / "list.pth"), allow_download=False)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "small.pth")
    with pytest.raises(DataError, match="does not fit torch-fidelity's Inception"):
        create_extractor(inception_space(str(tmp_path / "small.pth"), allow_download=False), ["2048"], cuda=False)


# --- caches under results/cache --------------------------------------------------------------------------------

def test_planted_fidelity_cache_files_are_never_unpickled(domain, tmp_path):
    space, real = domain
    fake = real.flip(-1)[:20]
    clean = fidelity_metrics(fake, real, space, cache_dir=tmp_path / "clean", prc=True)

    marker, cache = tmp_path / "owned", tmp_path / "cache"
    name = real_cache_name(real, space)
    # Where torch-fidelity's own cache would look (it reads those with weights_only=False) ...
    for planted in (f"{name}-{DOMAIN}-features-embedding.pt", f"{name}-{DOMAIN}-stat-fid-embedding.pt"):
        payload_file(cache / planted, marker)
    # ... and our cache entry: an object array (a pickle inside the .npz) with a digest forged to match.
    ours = real_cache_file(cache, real, space, "embedding")
    buffer = io.BytesIO()
    np.savez(buffer, features=np.array([Payload(marker)], dtype=object))
    ours.write_bytes(buffer.getvalue())
    digest_path(ours).write_text(content_digest(ours.name, buffer.getvalue()))

    assert fidelity_metrics(fake, real, space, cache_dir=cache, prc=True) == clean
    assert not marker.exists()
    assert read_verified(ours) is not None and read_verified(ours) != buffer.getvalue()     # made again


def test_an_edited_feature_cache_is_recomputed_not_trusted(domain, tmp_path, capsys):
    space, real = domain
    fake = real.flip(-1)[:20]
    clean = fidelity_metrics(fake, real, space, cache_dir=tmp_path)
    cached = real_cache_file(tmp_path, real, space, "embedding")
    with np.load(cached) as npz:
        edited = npz["features"] * 0          # features that would make the fake set look like the real one
    buffer = io.BytesIO()
    np.savez(buffer, features=edited)
    cached.write_bytes(buffer.getvalue())      # the digest beside it no longer matches
    assert fidelity_metrics(fake, real, space, cache_dir=tmp_path) == clean
    assert "does not match its recorded digest" in capsys.readouterr().out


def test_a_planted_domain_encoder_is_trained_again_not_loaded(tiny_demo, tmp_path, capsys):
    marker = tmp_path / "owned"
    images, labels, _ = load_split(tiny_demo, "train", 32, 3)
    path = payload_file(encoder_cache_path(tmp_path, images, labels, 1), marker)
    space = resolve_feature_space("domain", data_root=tiny_demo, image_size=32, channels=3, inception_weights=None,
                                  encoder_epochs=1, cache_dir=tmp_path)
    assert Path(space.weights_path) == path and read_verified(path) is not None
    assert not marker.exists()
    assert "does not match its recorded digest" in capsys.readouterr().out



def test_pretrained_classifier_weights_with_a_payload_are_one_line(tiny_demo, tmp_path, capsys):
    from training.train_classifier import main as classifier_main

    marker = tmp_path / "owned"
    evil = payload_file(tmp_path / "evil.pth", marker)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "small.pth")
    common = [f"data.{s}_dir={tiny_demo / s}" for s in ("train", "val", "test")]
    common += ["model.arch=resnet18", "train.epochs=1", "train.seeds=[0]", "train.device=cpu",
               f"output.results_dir={tmp_path / 'results'}"]
    config = str(Path(__file__).resolve().parents[1] / "experiments" / "classifier_baseline.yaml")
    assert run_cli(classifier_main, ["--config", config, *common, f"model.pretrained={evil}"]) == 2
    assert "refusing to load" in one_error_line(capsys) and not marker.exists()
    assert run_cli(classifier_main, ["--config", config, *common, f"model.pretrained={tmp_path / 'small.pth'}"]) == 2
    assert "is not torchvision ResNet-18 weights" in one_error_line(capsys)
