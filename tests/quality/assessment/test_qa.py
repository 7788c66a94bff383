"""quality/run_qa.py end to end on a tiny processed dataset, and its one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from quality.assessment.qa import MIN_UNSEEN_FOR_DETECTOR
from quality.checks.detectability import MIN_IMAGES_PER_SET
from quality.run_qa import main
from tests.helpers import run_script
from training.core.errors import run_cli
from training.data.sources.demo import demo_records

SECTIONS = ("statistics", "diversity", "fidelity", "memorisation", "artefacts", "visual", "summary")


def synthetic_folder(folder: Path, images: list[np.ndarray]) -> Path:
    """A generated-looking folder: flat synthetic_<class>_NNNNNN.png, a manifest and a rejected/ sub-folder."""
    (folder / "rejected").mkdir(parents=True)
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"synthetic_malignant_{i:06d}.png")
    Image.fromarray(np.zeros_like(images[0])).save(folder / "rejected" / "synthetic_malignant_999999.png")
    (folder / "manifest.jsonl").write_text("".join(json.dumps({"index": i}) + "\n" for i in range(len(images))))
    return folder


@pytest.fixture(scope="module")
def independent_draw(tmp_path_factory) -> Path:
    """Malignant demo images from another seed: same distribution as the tiny dataset, other images."""
    records, _ = demo_records(seed=1, image_size=32, num_train=45, imbalance=2)
    pixels = [r.pixels for r in records if r.class_name == "malignant" and r.split == "train"]
    return synthetic_folder(tmp_path_factory.mktemp("synthetic") / "independent", pixels)


@pytest.fixture(scope="module")
def copies(tiny_demo, tmp_path_factory) -> Path:
    """Copies of the real training images: memorisation must fail."""
    real = sorted((tiny_demo / "train" / "malignant").glob("*.png"))
    return synthetic_folder(tmp_path_factory.mktemp("synthetic") / "copies", [np.asarray(Image.open(p)) for p in real])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")    # one domain encoder for the whole module


def qa_args(real: Path, synthetic: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--real", str(real), "--synthetic", str(synthetic), "--output_dir", str(out), "--cache_dir", str(cache),
            "--feature_extractor", "domain", "--encoder_epochs", "1", "--detector_epochs", "2", "--device", "cpu", *extra]


def test_end_to_end_writes_json_markdown_and_self_contained_html(tiny_demo, independent_draw, cache, tmp_path, capsys):
    out = tmp_path / "qa" / "independent"
    result = run_script(capsys, "quality/run_qa.py",
                        *qa_args(tiny_demo / "train" / "malignant", independent_draw, out, cache, "--strict"))
    # 15 images per set: too few for detectability to tell a good set from a bad one, so no pass (exit 3).
    assert result.returncode == 3, result.stderr
    assert "overall" in result.stdout and str(out / "report.html") in result.stdout
    assert f"insufficient: detectability: 15 images per set, needs {MIN_IMAGES_PER_SET}" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["verdict"] == report["detectability"]["verdict"] == "insufficient"
    assert report["detectability"]["evidence"] == {"images": 15, "needed": MIN_IMAGES_PER_SET, "unit": "images per set"}
    assert "INSUFFICIENT" in (out / "report.html").read_text() and "| detectability | insufficient |" in (
        out / "report.md").read_text()
    for section in SECTIONS:
        assert section in report
    for check in SECTIONS[:5]:
        assert report[check]["verdict"] in ("pass", "warn", "insufficient", "fail") and report[check]["reason"]
        assert "thresholds" in report[check]
    assert report["images"]["synthetic"]["num_used"] == 15     # rejected/ and manifest.jsonl are ignored
    assert report["feature_space"]["kind"] == "domain"
    assert Path(report["inputs"]["data_root"]) == tiny_demo.resolve()   # inferred from --real
    assert report["memorisation"]["verdict"] != "fail" and report["memorisation"]["exact_copies"] == 0
    # The encoder trained without half of the real images; they are the baseline's real side.
    num_real = report["images"]["real"]["num_used"]
    assert report["fidelity"]["real_baseline"]["real_side"] == "images the feature encoder never trained on"
    assert report["fidelity"]["real_baseline"]["reference_images"] == num_real // 2
    unseen = (num_real + 1) // 2
    detector_real = unseen if unseen >= MIN_UNSEEN_FOR_DETECTOR else num_real      # too few unseen: all of them
    assert report["detectability"]["views"]["features"]["images_per_set"] == min(detector_real, 15)
    assert report["run_info"]["versions"]["torch"]
    html = (out / "report.html").read_text()
    figures = [f for check in SECTIONS[:6] for f in report[check].get("figures", [])]
    assert len(figures) >= 6 and all((out / f).is_file() for f in figures)
    assert html.count("data:image/png;base64,") == len(figures)
    assert "<img" in html and 'src="http' not in html
    markdown = (out / "report.md").read_text()
    assert "Checklist" in markdown and "FID" in markdown and "| memorisation |" in markdown


def test_strict_exits_1_on_a_failing_set(tiny_demo, copies, cache, tmp_path, capsys, monkeypatch):
    import quality.run_qa as script

    # --strict changes only the exit code: the run without it, on the same inputs, is given the first run's report.
    calls, reports, real_run_qa = [], [], script.run_qa

    def run_once(*args, **kwargs):
        calls.append((args, kwargs))
        assert calls[-1] == calls[0], "the run without --strict asked for another report"
        if not reports:
            reports.append(real_run_qa(*args, **kwargs))
        return reports[0]

    monkeypatch.setattr(script, "run_qa", run_once)
    args = qa_args(tiny_demo / "train" / "malignant", copies, tmp_path / "copies", cache)
    assert main(args + ["--strict"]) == 1
    assert re.search(r"memorisation +FAIL", capsys.readouterr().out)
    assert main(args) == 0 and len(calls) == 2      # without --strict a failing report is still a successful run
    report = json.loads((tmp_path / "copies" / "report.json").read_text())
    assert report["summary"]["verdict"] == "fail" and report["memorisation"]["exact_copies"] == 15


def test_smaller_synthetic_images_are_compared_at_their_size_and_recorded(tiny_demo, independent_draw, cache, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for path in sorted(independent_draw.glob("*.png")):
        Image.open(path).resize((16, 16)).save(small / path.name)
    assert main(qa_args(tiny_demo / "train" / "malignant", small, tmp_path / "out", cache)) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["images"]["image_size"] == 16 and report["images"]["synthetic"]["num_resized"] == 0
    assert report["images"]["real"]["num_resized"] == 15
    assert any("resized to 16x16" in w for w in report["warnings"])


def one_line_error(argv: list[str], capsys) -> str:
    assert run_cli(main, argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_missing_folder_is_one_line_and_exit_2_from_the_command_line(tmp_path, capsys):
    result = run_script(capsys, "quality/run_qa.py", "--real", str(tmp_path / "nope"), "--synthetic", str(tmp_path),
                        "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: real folder not found: {tmp_path / 'nope'}"


def test_domain_features_without_a_dataset_ask_for_data_root(independent_draw, tmp_path, capsys):
    real = tmp_path / "loose"
    shutil.copytree(independent_draw, real)
    line = one_line_error(qa_args(real, independent_draw, tmp_path / "out", tmp_path / "cache"), capsys)
    assert "--data_root" in line


def test_grey_against_colour_names_both_folders(tiny_demo, tmp_path, capsys):
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32), 40 * i, dtype=np.uint8)).save(grey / f"synthetic_malignant_{i:06d}.png")
    real = tiny_demo / "train" / "malignant"
    line = one_line_error(qa_args(real, grey, tmp_path / "out", tmp_path / "cache"), capsys)
    assert "channel mismatch" in line and str(real) in line and str(grey) in line


def test_empty_synthetic_folder_is_one_line(tiny_demo, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = one_line_error(qa_args(tiny_demo / "train" / "malignant", tmp_path / "empty", tmp_path / "out",
                                  tmp_path / "cache"), capsys)
    assert "holds no images" in line


def test_report_is_not_written_into_an_image_folder(tiny_demo, independent_draw, tmp_path, capsys):
    line = one_line_error(qa_args(tiny_demo / "train" / "malignant", independent_draw, independent_draw,
                                  tmp_path / "cache"), capsys)
    assert "is one of the image folders" in line
    assert not (independent_draw / "report.json").exists()


def test_qa_of_a_new_draw_from_the_real_distribution_finds_no_fault_and_says_what_it_lacks(tmp_path):
    """An independent draw of the real distribution is what a perfect generator makes: no check may warn or
    fail. At 110 images per set some checks cannot yet tell a good set from a bad one; they say so, with
    the number they need, and the overall verdict is insufficient, never pass (the whole QA passes such
    draws at 500 images per set: bench/bench_qa_calibration.py --qa_draws)."""
    from quality.assessment.qa import QAOptions, run_qa
    from training.data.prepare import SourceOptions, prepare_dataset

    num_train = 3 * MIN_IMAGES_PER_SET + 3       # 1 : 2, so that the malignant class has enough for detectability
    root = prepare_dataset("demo", tmp_path / "processed", "demo", SourceOptions(
        seed=0, demo_num_train=num_train, demo_imbalance=2, image_size=32)).root
    records, _ = demo_records(seed=1, image_size=32, num_train=num_train, imbalance=2)
    fresh = synthetic_folder(tmp_path / "fresh", [r.pixels for r in records
                                                  if r.class_name == "malignant" and r.split == "train"])
    report = run_qa(root / "train" / "malignant", fresh, tmp_path / "qa",
                    QAOptions(feature_extractor="domain", encoder_epochs=15, cache_dir=str(tmp_path / "cache")))
    assert report["fidelity"]["real_baseline"]["ratio"] < 1.5
    assert report["detectability"]["views"]["features"]["auc"] < 0.6 and report["detectability"]["verdict"] == "pass"
    assert report["detectability"]["views"]["cnn"]["auc"] < 0.6
    checks = report["summary"]["checks"]
    assert {check["verdict"] for check in checks.values()} <= {"pass", "insufficient"}
    lacking = report["summary"]["insufficient"]
    assert lacking and report["summary"]["verdict"] == "insufficient"
    for name in lacking:
        found = report[name]["evidence"]
        assert found["images"] < found["needed"] and f"needs {found['needed']:,}" in lacking[name]


def test_a_one_epoch_generator_fails_and_the_checkpoint_screen_agrees_with_run_qa(tiny_demo, cache, tmp_path):
    """QA of a generator trained for one epoch fails; the GAN's checkpoint screen, given the same images,
    gives its checks the verdicts run_qa gives them (detectability: the same linear views' AUCs)."""
    from quality.assessment.qa import SCREEN_CHECKS, QAOptions, held_out_half, resolve_space, run_qa, screen
    from quality.features.frechet import extract_features
    from quality.features.image_sets import load_pair
    from tests.helpers import tiny_gan_raw
    from training.core.config import build
    from training.gan.config import GANConfig
    from training.gan.loop import train_gan
    from training.synthesis import sampling

    config = build(GANConfig, tiny_gan_raw(tiny_demo, tmp_path, train={"epochs": 1}), "test")
    train_gan(config)
    generators = sampling.load_generators([tmp_path / "results" / "gan" / "tiny_hinge" / "final_generator.pth"],
                                          torch.device("cpu"))
    synthetic = tmp_path / "one_epoch"
    sampling.generate(generators, [1.0], 15, 0, synthetic, workers=1)
    real_dir = tiny_demo / "train" / "malignant"
    options = QAOptions(feature_extractor="domain", encoder_epochs=1, detector_epochs=2, cache_dir=str(cache))
    report = run_qa(real_dir, synthetic, tmp_path / "qa", options)
    assert report["summary"]["verdict"] == "fail"

    real, fake = load_pair(real_dir, synthetic)
    space, _ = resolve_space(options, real_dir, 32, 3, "cpu", held_out_half(real.images, options.seed))
    screened = screen(real.images, fake.images, space, real_features=extract_features(real.images, space),
                      synthetic_features=extract_features(fake.images, space), seed=options.seed, device="cpu",
                      cache_dir=cache)
    for name in SCREEN_CHECKS:
        if name != "detectability":
            assert screened[name]["verdict"] == report[name]["verdict"], name
    for view, result in screened["detectability"]["views"].items():
        assert result["auc"] == report["detectability"]["views"][view]["auc"], view
    assert "cnn" not in screened["detectability"]["views"] and "cnn" in report["detectability"]["views"]
