"""Bulk synthesis: determinism, resume, blending, refusals, and the generate_samples.py script."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import REPO_ROOT, one_line_error, run_script, tiny_gan_raw
from training.core.config import build
from training.core.errors import UserError, run_cli
from training.data import synthetic_folder as folder_layout
from training.data.images import pixel_sha256, read_image
from training.gan.checkpoint import save_generator
from training.gan.config import GANConfig
from training.gan.dcgan import NoiseInjection
from training.gan.networks import build_generator
from training.generate_samples import main as generate_main
from training.synthesis import sampling

ROOT = REPO_ROOT
CPU = torch.device("cpu")


def make_generator(path: Path, seed: int, channels: int = 3, classes: list[str] | None = None, **model) -> Path:
    """A self-describing generator file (random weights: the pipeline, not the quality, is under test).

    With `classes`, a conditional generator of those classes; `model` sets other model keys (InfoGAN codes)."""
    raw = tiny_gan_raw(Path("unused"), path.parent)
    raw["data"]["channels"] = channels
    raw["model"].update(model)
    if classes:
        raw["data"]["train_on"], raw["model"]["conditional"] = "all_classes", True
    config = build(GANConfig, raw, "test")
    torch.manual_seed(seed)
    save_generator(path, build_generator(config.model, config.data, len(classes or [])), config, epoch=1,
                   class_names=classes)
    return path


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generators")
    return [make_generator(folder / f"g{seed}.pth", seed) for seed in (0, 1)]


def generate(paths, out, num, **kwargs):
    loaded = sampling.load_generators(paths, CPU)
    weights = sampling.normalise_weights(kwargs.pop("weights", None), len(loaded))
    return sampling.generate(loaded, weights, num, kwargs.pop("seed", 0), out, workers=kwargs.pop("workers", 2), **kwargs)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("synthetic_*.png"))}


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / folder_layout.SYNTHETIC_MANIFEST).read_text().splitlines()]


def test_same_seed_gives_identical_files_whatever_the_batch_size(generators, tmp_path):
    for batch_size, workers in ((1, 1), (5, 2), (64, 2)):
        generate(generators[:1], tmp_path / f"b{batch_size}", 13, batch_size=batch_size, workers=workers)
    reference = files(tmp_path / "b1")
    assert len(reference) == 13 and list(reference)[0] == "synthetic_malignant_000000.png"
    assert files(tmp_path / "b5") == reference and files(tmp_path / "b64") == reference
    records = manifest(tmp_path / "b64")
    assert [r["index"] for r in records] == list(range(13))
    for r in records:   # the recorded hash is of the pixels, as in a processed dataset's manifest.csv
        assert r["sha256"] == pixel_sha256(read_image(tmp_path / "b64" / r["file"]))
    generate(generators[:1], tmp_path / "other_seed", 13, seed=1)
    assert files(tmp_path / "other_seed") != reference


def test_a_generator_with_noise_inputs_writes_the_same_files_whatever_the_batch_size(tmp_path):
    raw = tiny_gan_raw(Path("unused"), tmp_path)
    raw["model"].update(upsample="bilinear", g_output_block=True, g_noise=True)
    config = build(GANConfig, raw, "test")
    torch.manual_seed(0)
    G = build_generator(config.model, config.data)
    for layer in G.modules():                       # trained noise weights are not 0: make the noise count
        if isinstance(layer, NoiseInjection):
            torch.nn.init.constant_(layer.weight, 0.5)
    save_generator(tmp_path / "noisy.pth", G, config, epoch=1)
    for batch_size in (1, 7):
        generate([tmp_path / "noisy.pth"], tmp_path / f"b{batch_size}", 9, batch_size=batch_size, workers=1)
    assert len(files(tmp_path / "b1")) == 9 and files(tmp_path / "b7") == files(tmp_path / "b1")


def test_rerun_finishes_missing_indices_without_rewriting_others(generators, tmp_path):
    out = tmp_path / "out"
    generate(generators[:1], out, 10)
    reference = files(out)
    (out / "synthetic_malignant_000003.png").unlink()                          # lost file
    kept = manifest(out)
    unrecorded = "".join(json.dumps(r) + "\n" for r in kept if r["index"] != 7)
    (out / folder_layout.SYNTHETIC_MANIFEST).write_text(unrecorded)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("synthetic_*.png")}
    summary = generate(generators[:1], out, 12)
    assert summary["written"] == 3 and summary["kept"] == 9             # 3 (missing) + 10, 11 (new)
    after = files(out)
    assert {k: after[k] for k in reference} == reference
    assert all((out / name).stat().st_mtime_ns == t for name, t in before.items())
    assert [r["index"] for r in manifest(out)] == list(range(12))


def test_folder_of_another_generator_is_refused_unless_overwrite(generators, tmp_path):
    out = tmp_path / "out"
    generate(generators[:1], out, 6)
    first = files(out)
    with pytest.raises(UserError, match="another generator or seed"):
        generate(generators[1:], out, 6)
    assert files(out) == first
    generate(generators[1:], out, 4, overwrite=True)
    assert sorted(files(out)) == [f"synthetic_malignant_{i:06d}.png" for i in range(4)]   # 4, 5 were ours: removed
    assert {r["generator_sha256"] for r in manifest(out)} == {sampling.file_sha256(generators[1])}


def test_blend_splits_by_weight_and_records_the_generator(generators, tmp_path):
    generate(generators, tmp_path / "blend", 9, weights=[2, 1])
    made_by = [Path(r["generator"]).name for r in manifest(tmp_path / "blend")]
    assert made_by.count("g0.pth") == 6 and made_by.count("g1.pth") == 3
    order = sampling.assign_generators(300, [1 / 3] * 3)
    assert order[:6] == [0, 1, 2, 0, 1, 2] and [order.count(g) for g in range(3)] == [100, 100, 100]
    assert sampling.assign_generators(10, [0.7, 0.3]) == sampling.assign_generators(20, [0.7, 0.3])[:10]


def test_grey_generator_writes_grey_pngs(tmp_path):
    grey = make_generator(tmp_path / "grey.pth", 0, channels=1)
    generate([grey], tmp_path / "out", 3)
    image = read_image(tmp_path / "out" / "synthetic_malignant_000000.png")
    assert image.shape == (32, 32) and image.dtype == np.uint8
    with pytest.raises(UserError, match="cannot blend"):
        sampling.load_generators([grey, make_generator(tmp_path / "rgb.pth", 0)], CPU)


def test_validation_test_and_dataset_folders_are_refused_before_writing(generators, tiny_demo, tmp_path):
    for target, message in ((tiny_demo / "val" / "malignant", "split of"), (tiny_demo / "test" / "new", "split of"),
                            (tiny_demo / "train" / "malignant", "processed dataset")):
        before = sorted(p.name for p in target.parent.rglob("*"))
        with pytest.raises(UserError, match=message):
            generate(generators[:1], target, 3)
        assert sorted(p.name for p in target.parent.rglob("*")) == before
    foreign = tmp_path / "someone"
    foreign.mkdir()
    (foreign / "patient_001.png").write_bytes((tiny_demo / "manifest.csv").read_bytes())
    with pytest.raises(UserError, match="did not write"):
        generate(generators[:1], foreign, 3)


def test_preview_only_writes_exactly_one_file_showing_the_first_64_images(generators, tmp_path):
    out = tmp_path / "preview"
    assert generate_main(["--checkpoint", str(generators[0]), "--output_dir", str(out), "--preview_only"]) == 0
    assert [p.name for p in out.iterdir()] == ["preview_grid.png"]
    grid = read_image(out / "preview_grid.png")
    assert grid.shape == (2 + 8 * 34, 2 + 8 * 34, 3)     # 8 x 8 tiles of 32 px with 2 px padding
    generate(generators[:1], tmp_path / "bulk", 64)
    first = read_image(tmp_path / "bulk" / "synthetic_malignant_000000.png")
    assert np.abs(grid[2:34, 2:34].astype(int) - first.astype(int)).max() <= 1    # tile 0 is image 0


def run(capsys, *args):
    """generate_samples.py as launched with no terminal: its main through run_cli, stdin not a tty."""
    return run_script(capsys, "training/generate_samples.py", *args)


def test_preview_without_terminal_needs_yes(generators, tmp_path, capsys):
    out = tmp_path / "out"
    result = run(capsys, "--checkpoint", str(generators[0]), "--output_dir", str(out), "--num_samples", "20",
                 "--preview")
    assert result.returncode == 2 and "needs --yes" in result.stderr and "Traceback" not in result.stderr
    assert not list(out.glob("synthetic_*.png"))
    result = run(capsys, "--checkpoint", str(generators[0]), "--output_dir", str(out), "--num_samples", "20",
                 "--preview", "--yes")
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("synthetic_*.png"))) == 20 and len(manifest(out)) == 20
    info = json.loads((out / folder_layout.GENERATION_INFO).read_text())
    assert info["seed"] == 0 and info["generators"][0]["sha256"] == sampling.file_sha256(generators[0])


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "/nonexistent/g.pth", "--num_samples", "3"], "generator checkpoint not found"),
    (["--num_samples", "3"], "give --checkpoint"),
    (["--checkpoint", "g.pth", "--num_samples", "0"], "--num_samples must be between 1 and"),
    (["--checkpoint", "g.pth", "--num_samples", "3", "--shard", "2/2"], "--shard must be K/N with 0 <= K < N"),
    (["--checkpoint", "g.pth", "--num_samples", "3", "--shard", "0/4"], "4 jobs for 3 images"),
    (["--checkpoint", "g.pth", "--num_samples", "3", "--conf_thresh", "0.5"], "--conf_thresh needs --filter_classifier"),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    one_line_error(run(capsys, *args, "--output_dir", str(tmp_path / "out")), message)


def test_images_a_reviewer_rejected_are_not_made_again(generators, tmp_path):
    out = tmp_path / "out"
    generate(generators[:1], out, 5)
    (out / folder_layout.REJECTED).mkdir()
    (out / "synthetic_malignant_000002.png").rename(out / folder_layout.REJECTED / "synthetic_malignant_000002.png")
    assert generate(generators[:1], out, 5)["written"] == 0
    assert not (out / "synthetic_malignant_000002.png").exists()


def test_classifier_filter_keeps_confident_images_and_records_the_rest(generators, tiny_demo, tmp_path):
    from training.classify.config import ClassifierConfig
    from training.classify.loop import train_classifier

    raw = {"data": {"train_dir": str(tiny_demo / "train"), "val_dir": str(tiny_demo / "val"),
                    "test_dir": str(tiny_demo / "test"), "image_size": 16},
           "model": {"arch": "mlp", "width": 4}, "train": {"epochs": 1, "seeds": [0], "device": "cpu"},
           "output": {"name": "filter", "results_dir": str(tmp_path / "results")}}
    classifier = train_classifier(build(ClassifierConfig, raw, "test")) / "seed_0" / "best_model.pth"
    confidence = sampling.classifier_confidence(classifier, "malignant", CPU)
    out = tmp_path / "out"
    loaded = sampling.load_generators(generators[:1], CPU)
    threshold = float(np.median(confidence(sampling.render(loaded[0], [sampling.image_seed(0, i) for i in range(20)], CPU))))
    summary = sampling.generate(loaded, [1.0], 20, 0, out, workers=1, confidence=confidence, conf_thresh=threshold)
    assert summary["written"] + summary["filtered_out"] == 20 and 0 < summary["written"] < 20
    records = manifest(out)
    kept = [r for r in records if not r.get("filtered_out")]
    assert len(list(out.glob("synthetic_*.png"))) == len(kept) == summary["written"]
    assert all(r["confidence"] >= threshold for r in kept)
    assert all(r["confidence"] < threshold for r in records if r.get("filtered_out"))
    again = sampling.generate(loaded, [1.0], 20, 0, out, workers=1, confidence=confidence, conf_thresh=threshold)
    assert again["written"] == 0 and again["kept"] == 20           # filtered ones are not made again


# Splitting a bulk job: --shard K/N jobs, and torchrun processes.

BLEND = 21              # images of the split tests: odd, so the shards differ in size


def without_times(folder: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "created_utc"} for r in manifest(folder)]


def shard_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("manifest.shard*"))


def blend_args(generators, out: Path, *extra: str) -> list[str]:
    return ["--checkpoint", *map(str, generators), "--weights", "2", "1", "--num_samples", str(BLEND),
            "--output_dir", str(out), "--yes", *extra]


@pytest.fixture(scope="module")
def one_process(generators, tmp_path_factory) -> Path:
    """The reference: the blended job made by one process."""
    out = tmp_path_factory.mktemp("split") / "one_process"
    assert generate_main(blend_args(generators, out)) == 0
    return out


def test_shard_jobs_then_a_merge_give_the_files_and_manifest_of_one_process(generators, one_process, tmp_path):
    out = tmp_path / "sharded"
    assert generate_main(blend_args(generators, out, "--shard", "1/2")) == 0
    assert sorted(files(out)) == [f"synthetic_malignant_{i:06d}.png" for i in range(BLEND // 2, BLEND)]
    assert shard_files(out) == ["manifest.shard1of2.jsonl"] and not (out / folder_layout.SYNTHETIC_MANIFEST).exists()
    assert not (out / folder_layout.GENERATION_INFO).exists()                      # the merging run records the job
    assert generate_main(blend_args(generators, out, "--shard", "0/2")) == 0
    assert sorted(folder_layout.read_synthetic_manifest(out)) == list(range(BLEND))   # readers see the shards before a merge
    assert generate_main(blend_args(generators, out)) == 0              # the merge: nothing left to make
    assert files(out) == files(one_process)
    assert without_times(out) == without_times(one_process) and shard_files(out) == []
    assert json.loads((out / folder_layout.GENERATION_INFO).read_text())["summary"]["kept"] == BLEND


def test_a_plain_run_finishes_a_split_job_with_a_missing_shard_and_filter(generators, tmp_path):
    loaded = sampling.load_generators(generators, CPU)

    def brightness(pixels):        # a stand-in classifier: deterministic per image, about half pass
        return pixels.reshape(len(pixels), -1).mean(1) / 255

    def run_job(out, shard):
        return sampling.generate(loaded, [2 / 3, 1 / 3], BLEND, 0, out, workers=1, shard=shard,
                                  confidence=brightness, conf_thresh=0.5)

    reference = tmp_path / "one"
    run_job(reference, (0, 1))
    assert 0 < len(files(reference)) < BLEND
    out = tmp_path / "split"
    out.mkdir()
    another_writing = out / ".synthetic_malignant_000010.png.999.tmp"     # shard 1's file, mid-write
    another_writing.write_bytes(b"")
    for k in (2, 0):                               # shard 1 of 3 was killed before it wrote anything
        run_job(out, (k, 3))
    assert another_writing.exists()                # a shard removes only its own leftovers
    summary = run_job(out, (0, 1))
    assert summary["written"] + summary["filtered_out"] == 7 and not another_writing.exists()
    assert files(out) == files(reference) and without_times(out) == without_times(reference)
    assert shard_files(out) == []


def test_a_shard_refuses_a_folder_of_another_job_before_writing(generators, tmp_path):
    out = tmp_path / "out"
    generate(generators[1:], out, 6)
    before = files(out)
    with pytest.raises(UserError, match="another generator or seed"):      # indices 0-5 belong to shard 0
        generate(generators[:1], out, BLEND, shard=(1, 2))
    assert files(out) == before and shard_files(out) == []


def test_torchrun_processes_write_the_files_of_one_process(generators, one_process, tmp_path):
    out = tmp_path / "torchrun"
    generate(generators[1:], out, 4)               # an earlier job's images: --overwrite clears them once
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "training/generate_samples.py", *blend_args(generators, out, "--overwrite", "--preview")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert files(out) == files(one_process) and without_times(out) == without_times(one_process)
    assert shard_files(out) == [] and (out / folder_layout.PREVIEW).is_file()
    reports = [line for line in result.stdout.splitlines() if line.startswith("wrote")]     # rank 0's, once
    assert len(reports) == 1 and reports[0].startswith(f"wrote {BLEND} images (0 already there)")
    assert json.loads((out / folder_layout.GENERATION_INFO).read_text())["processes"] == 2


@pytest.mark.parametrize("extra, world_size, message", [
    (["--shard", "2/2"], 1, "--shard must be K/N with 0 <= K < N"),
    (["--shard=-1/2"], 1, "--shard must be K/N"),
    (["--shard", "1"], 1, "--shard must be K/N"),
    (["--shard", "a/b"], 1, "--shard must be K/N"),
    (["--shard", "0/2", "--overwrite"], 1, "--overwrite cannot be combined with --shard"),
    (["--shard", "0/2"], 2, "--shard is for separately launched jobs"),
    (["--preview"], 2, "--preview under torchrun needs --yes"),
])
def test_bad_split_flags_are_one_line(extra, world_size, message, generators, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", str(world_size))     # as torchrun sets it; refused before joining any group
    args = ["--checkpoint", str(generators[0]), "--num_samples", "3", "--output_dir", str(tmp_path / "out"), *extra]
    assert run_cli(generate_main, args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_conditional_generator_makes_the_class_asked_for(tmp_path):
    ckpt = make_generator(tmp_path / "cond.pth", 0, classes=["benign", "malignant"])
    assert run_cli(generate_main, ["--checkpoint", str(ckpt), "--num_samples", "3"]) == 2      # no --class
    with pytest.raises(UserError, match="conditional generator of benign, malignant.*'melanoma' is not"):
        sampling.load_generators([ckpt], CPU, "melanoma")
    for name in ("benign", "malignant"):
        assert generate_main(["--checkpoint", str(ckpt), "--class", name, "--num_samples", "3", "--workers", "1",
                              "--output_dir", str(tmp_path / name)]) == 0
        records = [json.loads(line) for line in (tmp_path / name / folder_layout.SYNTHETIC_MANIFEST).read_text().splitlines()]
        assert [r["file"] for r in records] == [f"synthetic_{name}_{i:06d}.png" for i in range(3)]
        assert {r["class"] for r in records} == {name}
    benign, malignant = (read_image(tmp_path / c / f"synthetic_{c}_000000.png") for c in ("benign", "malignant"))
    assert not np.array_equal(benign, malignant)                  # same latent, another class: another image
    G, = sampling.load_generators([ckpt], CPU, "malignant")
    assert np.array_equal(malignant, sampling.render(G, [sampling.image_seed(0, 0)], CPU)[0])


def test_class_of_an_unconditional_generator_must_be_its_own(generators, tmp_path):
    assert sampling.load_generators(generators[:1], CPU, "malignant")[0].class_name == "malignant"
    with pytest.raises(UserError, match="makes 'malignant' images only"):
        sampling.load_generators(generators[:1], CPU, "benign")


def test_folder_of_another_class_or_code_is_refused(tmp_path):
    ckpt = make_generator(tmp_path / "info.pth", 0, info_categories=3)
    out = ["--checkpoint", str(ckpt), "--num_samples", "2", "--workers", "1", "--output_dir", str(tmp_path / "out")]
    assert generate_main([*out, "--fix_code", "cat=1"]) == 0
    assert run_cli(generate_main, [*out, "--fix_code", "cat=2"]) == 2
    assert generate_main([*out, "--fix_code", "cat=1"]) == 0      # the same job again: nothing to do, no conflict


def test_infogan_codes_can_be_fixed_and_swept(tmp_path):
    from PIL import Image

    from training.gan.latents import split_codes

    ckpt = make_generator(tmp_path / "info.pth", 0, info_categories=3, info_continuous=1)
    G, = sampling.load_generators([ckpt], CPU, codes={"cat": 2, "cont0": 0.5})
    z = sampling.latents(G, [11, 12, 13])
    category, continuous = split_codes(G.model.latent, z)
    assert category.tolist() == [2, 2, 2] and continuous.flatten().tolist() == [0.5, 0.5, 0.5]
    plain, = sampling.load_generators([ckpt], CPU)
    assert torch.equal(z[:, :16], sampling.latents(plain, [11, 12, 13])[:, :16])    # the noise is untouched

    assert generate_main(["--checkpoint", str(ckpt), "--sweep_code", "cat", "--output_dir", str(tmp_path)]) == 0
    width, height = Image.open(tmp_path / "code_sweep_cat.png").size
    assert (width, height) == (3 * 34 + 2, 8 * 34 + 2)             # 3 categories x 8 latents of 32 px, 2 px padding
    assert generate_main(["--checkpoint", str(ckpt), "--sweep_code", "cont0", "--output_dir", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "code_sweep_cont0.png").size[0] == 8 * 34 + 2     # 8 values from -2 to 2


@pytest.mark.parametrize("flags, message", [
    (["--fix_code", "cat"], "NAME=VALUE"),
    (["--fix_code", "hue=1"], "unknown latent code 'hue'"),
    (["--fix_code", "cat=1.5"], "takes a category 0..2"),
    (["--sweep_code", "cont3"], "unknown latent code 'cont3'"),
])
def test_bad_code_flags_are_one_line(flags, message, tmp_path, capsys):
    ckpt = make_generator(tmp_path / "info.pth", 0, info_categories=3, info_continuous=1)
    assert run_cli(generate_main, ["--checkpoint", str(ckpt), "--num_samples", "2", "--output_dir",
                                   str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_classifier_with_non_finite_outputs_cannot_filter(generators, tmp_path, capsys):
    from tests.helpers import refused
    from tests.training.synthesis.test_labelling import untrained_classifier

    classifier = untrained_classifier(tmp_path / "c.pth", weights="overflowing")     # NaN < threshold: all would pass
    out = tmp_path / "out"
    code = run_cli(generate_main, ["--checkpoint", str(generators[0]), "--num_samples", "4", "--workers", "1",
                                   "--device", "cpu", "--filter_classifier", str(classifier), "--output_dir", str(out)])
    refused(capsys, code, str(classifier), "outputs are not finite")
    assert not list(out.glob("synthetic_*.png"))
