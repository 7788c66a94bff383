import numpy as np
import pytest
import torch
from PIL import Image

from training.core.errors import DataError
from training.data.folders import load_class, load_split, to_float, to_uint8


def test_load_minority_class(tiny_demo):
    x = load_class(tiny_demo, "train", "malignant", 32, 3)
    assert x.dtype == torch.uint8 and x.shape == (15, 3, 32, 32)
    images, labels, classes = load_split(tiny_demo, "train", 32, 3)
    assert classes == ["benign", "malignant"] and len(images) == len(labels) == 45


def test_resizes_to_the_config_size(tiny_demo):
    assert load_class(tiny_demo, "train", "malignant", 64, 3).shape[-1] == 64


def test_missing_and_empty_class_folders(tmp_path, tiny_demo):
    with pytest.raises(DataError, match="class 'melanoma' not found.*classes: benign, malignant"):
        load_class(tiny_demo, "train", "melanoma", 32, 3)
    with pytest.raises(DataError, match="dataset folder not found"):
        load_class(tmp_path / "nope", "train", "x", 32, 3)
    (tmp_path / "d" / "train" / "empty").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_class(tmp_path / "d", "train", "empty", 32, 3)


def test_channel_mismatch_and_corrupt_files(tmp_path):
    folder = tmp_path / "d" / "train" / "c"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "grey.png")
    with pytest.raises(DataError, match="grey.png is greyscale but data.channels is 3"):
        load_class(tmp_path / "d", "train", "c", 32, 3)
    assert load_class(tmp_path / "d", "train", "c", 32, 1).shape == (1, 1, 32, 32)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(folder / "red.png")
    with pytest.raises(DataError, match="red.png has 3 colour channels but data.channels is 1"):
        load_class(tmp_path / "d", "train", "c", 32, 1)
    (folder / "red.png").unlink()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(folder / "grey_as_rgb.png")  # R == G == B: accepted
    assert load_class(tmp_path / "d", "train", "c", 32, 1).shape == (2, 1, 32, 32)
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        load_class(tmp_path / "d", "train", "c", 32, 1)


def test_uint8_float_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_float(x)), x)
    assert to_float(x).min() == -1 and to_float(x).max() == 1
