import pytest
import torch

from quality.features import extractors as feature_extractors
from quality.features.domain_encoder import get_domain_encoder, load_domain_encoder
from quality.features.extractors import domain_space, resolve_feature_space
from quality.features.frechet import fidelity_metrics
from training.core.errors import UserError
from training.data.folders import load_split


@pytest.fixture(scope="module")
def space_and_real(tiny_demo, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    images, labels, classes = load_split(tiny_demo, "train", 32, 3)
    space = domain_space(get_domain_encoder(images, labels, classes, epochs=2, cache_dir=cache))
    return space, images, cache


def test_fid_of_a_set_with_itself_is_zero_and_noise_is_far(space_and_real):
    space, real, cache = space_and_real
    same = fidelity_metrics(real, real, space, cache_dir=cache)
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    far = fidelity_metrics(noise, real, space, cache_dir=cache)
    assert abs(same["fid"]) < 1e-3
    assert far["fid"] > 100 * max(same["fid"], 1e-3) and far["fid"] > 1.0
    assert far["kid_mean"] > same["kid_mean"]
    assert same["is_mean"] is None and same["feature_extractor"] == "domain"


def test_kid_subset_adapts_and_prc_is_reported(space_and_real):
    space, real, cache = space_and_real
    result = fidelity_metrics(real[:20], real, space, cache_dir=cache, prc=True)
    assert result["kid_subset_size"] == 20 and result["kid_mean"] is not None
    assert 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1


def test_fid_matches_the_frechet_formula_on_the_extracted_features(space_and_real):
    """Reference check: torch-fidelity's FID equals the closed form on our encoder's features."""
    import numpy as np
    from scipy import linalg

    space, real, cache = space_and_real
    fake = real.flip(-1)[:30]
    encoder = load_domain_encoder(space.weights_path)
    with torch.no_grad():
        f1, f2 = encoder.embedding(fake).double().numpy(), encoder.embedding(real).double().numpy()
    mu1, mu2, s1, s2 = f1.mean(0), f2.mean(0), np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    got = fidelity_metrics(fake, real, space, cache_dir=cache)["fid"]
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_real_feature_cache_key_follows_the_data(space_and_real):
    from quality.features.frechet import real_cache_name

    space, real, _ = space_and_real
    changed = real.clone()
    changed[0, 0, 0, 0] ^= 1
    assert real_cache_name(real, space) != real_cache_name(changed, space)


def test_auto_uses_domain_offline_and_explicit_inception_fails_clearly(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.setattr(feature_extractors, "local_inception_weights", lambda configured: None)
    space = resolve_feature_space("auto", data_root=tiny_demo, image_size=32, channels=3, inception_weights=None,
                                  encoder_epochs=1, cache_dir=tmp_path)
    assert space.kind == "domain"

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    with pytest.raises(UserError, match="Inception weights are not on this machine.*metrics.feature_extractor=domain"):
        resolve_feature_space("inception-v3-compat", data_root=tiny_demo, image_size=32, channels=3,
                              inception_weights=None, encoder_epochs=1, cache_dir=tmp_path)


def test_configured_inception_file_must_exist(tmp_path):
    from training.core.errors import ConfigError

    with pytest.raises(ConfigError, match="inception_weights' file not found"):
        feature_extractors.local_inception_weights(str(tmp_path / "missing.pth"))


def test_domain_encoder_is_cached_by_content(tiny_demo, tmp_path):
    images, labels, classes = load_split(tiny_demo, "train", 32, 3)
    a = get_domain_encoder(images, labels, classes, epochs=1, cache_dir=tmp_path)
    mtime = a.stat().st_mtime_ns
    assert get_domain_encoder(images, labels, classes, epochs=1, cache_dir=tmp_path) == a
    assert a.stat().st_mtime_ns == mtime
    other = get_domain_encoder(images[:-1], labels[:-1], classes, epochs=1, cache_dir=tmp_path)
    assert other != a


def test_held_out_images_stay_out_of_the_encoder_and_are_marked_unseen(tiny_demo, tmp_path):
    images, _, classes = load_split(tiny_demo, "train", 32, 3)
    resolve = lambda held_out: resolve_feature_space("domain", data_root=tiny_demo, image_size=32, channels=3,
                                                     inception_weights=None, encoder_epochs=1, cache_dir=tmp_path,
                                                     held_out=held_out)
    everything, without = resolve(None), resolve(images[:5])
    assert len(everything.trained_on) == len(images) and len(without.trained_on) == len(images) - 5
    assert without.weights_path != everything.weights_path       # another encoder, cached apart
    assert without.unseen(images).tolist() == [True] * 5 + [False] * (len(images) - 5)
    assert not everything.unseen(images).any()
    assert torch.equal(torch.from_numpy(without.unseen(images[:5])), torch.ones(5, dtype=torch.bool))
