import json
import math
import shutil
from dataclasses import replace

import pytest
import torch

from tests.helpers import tiny_gan_raw
from training.core.config import build
from training.core.errors import ConfigError, TrainingDiverged, UserError
from training.gan.checkpoint import list_checkpoints, load_generator, load_training_state
from training.gan.config import GANConfig
from training.gan.loop import CannotResume, train_gan


def config(tiny_demo, tmp_path, loss="hinge", **sections):
    return build(GANConfig, tiny_gan_raw(tiny_demo, tmp_path, loss, **sections), "test")


@pytest.mark.parametrize("loss", ["wasserstein", "bce"])
def test_every_loss_trains_and_writes_its_generator(tiny_demo, tmp_path, loss):
    """The losses other than hinge through the whole loop (the metrics, the same for every loss, are tested below)."""
    summary = train_gan(config(tiny_demo, tmp_path, loss, metrics={"every": 0}))
    run = tmp_path / "results" / "gan" / f"tiny_{loss}"
    G, record = load_generator(run / "final_generator.pth")
    assert record["epoch"] == 2 and summary["paths"].root == run and (run / "loss_curves.png").is_file()
    assert torch.isfinite(G(torch.randn(2, G.z_dim))).all()
    rows = json.loads((run / "losses.json").read_text())           # one row per epoch
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(math.isfinite(v) for row in rows for v in row.values() if isinstance(v, float))


def test_few_step_run_writes_every_output(tiny_demo, tmp_path):
    """At 28 px, MedMNIST's size, learned as it is (the networks at 32 px inside a black frame): the metrics,
    the checkpoint screen and the images written are all 28 px."""
    from training.data.images import read_image
    from training.synthesis import sampling

    loss = "hinge"
    cfg = config(tiny_demo, tmp_path, loss, data={"image_size": 28})
    summary = train_gan(cfg)
    ckpt = metrics_dir = tmp_path / "results" / "gan" / f"tiny_{loss}"           # the run's one folder
    assert [p.name for p in list_checkpoints(ckpt / "checkpoints")] == ["checkpoint_epoch_0001.pth",
                                                                        "checkpoint_epoch_0002.pth"]
    for name in ("final_generator.pth", "best_generator.pth", "config.yaml", "run_info.json", "final_samples.png"):
        assert (ckpt / name).is_file(), name
    assert (ckpt / "samples" / "epoch_0002.png").is_file()
    assert summary["paths"].root == ckpt
    written = {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*") if p.is_file()}
    assert written <= {("results", "gan"), ("results", "cache")}, written     # nothing outside the run and the cache
    history = json.loads((metrics_dir / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["fid"] > 0 and h["feature_extractor"] == "domain" and h["kid_subset_size"] == 15 for h in history)
    assert (metrics_dir / "fidelity_curve.png").is_file() and (metrics_dir / "loss_curves.png").is_file()
    info = json.loads((ckpt / "run_info.json").read_text())
    assert info["seed"] == 0 and info["versions"]["torch"] and "git" in info
    G, record = load_generator(ckpt / "final_generator.pth")
    assert record["class_name"] == "malignant" and record["epoch"] == 2
    assert G(torch.randn(2, G.z_dim)).shape == (2, 3, 28, 28)
    out = tmp_path / "synthetic_28"
    sampling.generate(sampling.load_generators([ckpt / "final_generator.pth"], torch.device("cpu")), [1.0], 3, 0, out,
                      workers=1)
    assert {read_image(p).shape for p in out.glob("synthetic_*.png")} == {(28, 28, 3)}
    assert all(set(h["screen"]) == {"artefacts", "memorisation", "fidelity", "detectability"} for h in history)
    assert all(h["fine_detail_ratio"] > 0 and 0 <= h["detectability_auc"] <= 1 for h in history)
    best = json.loads((metrics_dir / "metrics.json").read_text())["best"]
    eligible = [h for h in history if "fail" not in h["screen"].values()]
    # Fewest screen checks not passing, then the lowest FID, among checkpoints failing none; else the lowest FID.
    expected = (min(eligible, key=lambda h: (4 - list(h["screen"].values()).count("pass"), h["fid"]))["fid"] if eligible
                else min(h["fid"] for h in history))
    assert summary["best_fid"] == expected
    assert "artefact, memorisation, fidelity and detectability" in best["reason"]
    assert (ckpt / "lowest_fid_generator.pth").is_file()


def test_resume_equals_uninterrupted(tiny_demo, tmp_path):
    """Two runs of one config and seed, one stopped at epoch 2 and resumed: the same G, EMA G and D, bit for bit
    (so the same seed gives the same generator, resumed or not), and the metric history of one run."""
    full = config(tiny_demo, tmp_path / "full", train={"epochs": 4, "checkpoint_every": 2}, metrics={"every": 2})
    train_gan(full)
    first = config(tiny_demo, tmp_path / "split", train={"epochs": 2, "checkpoint_every": 2}, metrics={"every": 2})
    train_gan(first)
    rest = config(tiny_demo, tmp_path / "split", train={"epochs": 4, "checkpoint_every": 2}, metrics={"every": 2})
    train_gan(rest, resume=True)
    sa, sb = (load_training_state(tmp_path / run / "results" / "gan" / "tiny_hinge" / "checkpoints" /
                                  "checkpoint_epoch_0004.pth") for run in ("full", "split"))
    for net in ("G", "G_ema", "D"):
        for k in sa[net]:
            assert torch.equal(sa[net][k], sb[net][k]), (net, k)
    assert [h["epoch"] for h in sb["state"]["metric_history"]] == [2, 4]


def test_resume_refuses_a_changed_config_and_a_missing_run(tiny_demo, tmp_path):
    train_gan(config(tiny_demo, tmp_path, train={"epochs": 1}))
    with pytest.raises(UserError, match="differs from the checkpoint's in train.lr_d"):
        train_gan(config(tiny_demo, tmp_path, train={"epochs": 2, "lr_d": 0.1}), resume=True)
    with pytest.raises(UserError, match="already holds a run"):
        train_gan(config(tiny_demo, tmp_path, train={"epochs": 1}))
    with pytest.raises(UserError, match="no checkpoint"):
        train_gan(config(tiny_demo, tmp_path, output={"name": "other"}), resume=True)


def test_resume_refuses_a_run_whose_training_images_changed(tiny_demo, tmp_path):
    # The same config over a folder whose images changed (a re-prepared data set, another fold of a
    # cross-validated study) would continue training on images the checkpoint never saw: refused.
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data)
    cfg = config(data, tmp_path, train={"epochs": 1}, metrics={"every": 0})
    train_gan(cfg)
    sorted((data / "train" / "malignant").iterdir())[0].unlink()
    with pytest.raises(CannotResume, match="training images in .* differ"):
        train_gan(replace(cfg, train=replace(cfg.train, epochs=2)), resume=True)


def test_init_from_starts_from_a_pretrained_run_and_freeze_d_keeps_its_first_blocks(tiny_demo, tmp_path):
    # Pretrain on the plentiful class, fine-tune on the minority: G, D and EMA start from the pretrained
    # weights, D's first block keeps them (FreezeD), the rest moves, and resume does not reload them.
    pre = config(tiny_demo, tmp_path, data={"minority_class": "benign"}, output={"name": "pre"},
                 metrics={"every": 0})
    train_gan(pre)
    start = tmp_path / "results" / "gan" / "pre" / "checkpoints" / "checkpoint_epoch_0002.pth"
    fine = config(tiny_demo, tmp_path, train={"init_from": str(start), "epochs": 1}, model={"freeze_d_blocks": 1},
                  output={"name": "fine"}, metrics={"every": 0})
    train_gan(fine)
    before = load_training_state(start)
    after = load_training_state(tmp_path / "results" / "gan" / "fine" / "checkpoints" / "checkpoint_epoch_0001.pth")
    first = [k for k in before["D"] if k.startswith("features.0.")]     # weight_u/v: power iteration
    assert first and all(torch.equal(before["D"][k], after["D"][k]) for k in first if k.endswith(("weight_orig", "bias")))
    later = [k for k in before["D"] if k.startswith("features.2.") and k.endswith("weight_orig")]
    assert later and not any(torch.equal(before["D"][k], after["D"][k]) for k in later)
    assert after["state"]["epoch"] == 1 and after["state"]["d_steps"] == len(after["state"]["loss_history"]) * 1
    # Starting from scratch with the same seed is a different generator: the weights did come from `pre`.
    scratch = config(tiny_demo, tmp_path, train={"epochs": 1}, output={"name": "scratch"}, metrics={"every": 0})
    train_gan(scratch)
    other = load_training_state(tmp_path / "results" / "gan" / "scratch" / "checkpoints" / "checkpoint_epoch_0001.pth")
    def distance(a, b):
        return sum(float((a[k] - b[k]).norm()) for k in a if a[k].is_floating_point())
    assert distance(after["G"], before["G"]) < distance(other["G"], before["G"]) / 4

    wider = config(tiny_demo, tmp_path, train={"init_from": str(start)}, model={"g_channels": 16},
                   output={"name": "wider"})
    with pytest.raises(UserError, match="different G"):
        train_gan(wider)


def test_freeze_d_blocks_needs_a_pretrained_start(tiny_demo, tmp_path):
    with pytest.raises(ConfigError, match="needs 'train.init_from'"):
        config(tiny_demo, tmp_path, model={"freeze_d_blocks": 1})
    with pytest.raises(ConfigError, match="at least the last must train"):
        config(tiny_demo, tmp_path, model={"freeze_d_blocks": 3}, train={"init_from": "x.pth"})


def test_nan_loss_stops_with_a_clear_error_and_keeps_last_checkpoint(tiny_demo, tmp_path):
    train_gan(config(tiny_demo, tmp_path, train={"epochs": 1}, metrics={"every": 0}))
    ckpt = tmp_path / "results" / "gan" / "tiny_hinge" / "checkpoints"
    before = (ckpt / "checkpoint_epoch_0001.pth").read_bytes()
    with pytest.raises(TrainingDiverged, match="D loss became nan in epoch 2; last good checkpoint kept"):
        _diverge(tiny_demo, tmp_path)
    assert (ckpt / "checkpoint_epoch_0001.pth").read_bytes() == before


def _diverge(tiny_demo, tmp_path):
    """Resume the 1-epoch run with a loss that turns NaN, as a real divergence would."""
    import training.gan.loop as loop
    from training.gan.losses import LOSSES, GANLoss

    nan_loss = GANLoss(lambda r, f: (r.mean() + f.mean()) * float("nan"), LOSSES["hinge"].g_loss)
    original = loop.LOSSES
    loop.LOSSES = {**original, "hinge": nan_loss}
    try:
        train_gan(config(tiny_demo, tmp_path, train={"epochs": 3}, metrics={"every": 0}), resume=True)
    finally:
        loop.LOSSES = original


def test_missing_minority_class_is_one_line(tiny_demo, tmp_path):
    with pytest.raises(UserError, match="class 'melanoma' not found"):
        train_gan(config(tiny_demo, tmp_path, data={"minority_class": "melanoma"}))


def test_conditional_gan_learns_every_class_and_reports_per_class_fid(tiny_demo, tmp_path):
    cfg = config(tiny_demo, tmp_path, data={"train_on": "all_classes"}, model={"conditional": True},
                 output={"name": "cond"}, train={"epochs": 1})
    summary = train_gan(cfg)
    ckpt = tmp_path / "results" / "gan" / "cond"
    G, record = load_generator(ckpt / "final_generator.pth")
    assert record["class_name"] is None and record["class_names"] == ["benign", "malignant"]
    z = torch.randn(4, G.z_dim)
    a, b = G(z, torch.zeros(4, dtype=torch.long)), G(z, torch.ones(4, dtype=torch.long))
    assert a.shape == (4, 3, 32, 32) and not torch.allclose(a, b)      # the label changes the image
    with pytest.raises(ValueError, match="needs class labels"):
        G(z)
    history = json.loads((tmp_path / "results" / "gan" / "cond" / "metrics.json").read_text())["history"]
    per_class = history[-1]["per_class"]
    assert set(per_class) == {"benign", "malignant"}
    assert history[-1]["fid"] == pytest.approx((per_class["benign"]["fid"] + per_class["malignant"]["fid"]) / 2)
    assert history[-1]["num_real"] == 45 and summary["best_fid"] == history[-1]["fid"]


def test_conditional_needs_all_classes(tiny_demo, tmp_path):
    from training.core.errors import ConfigError

    with pytest.raises(ConfigError, match="data.train_on"):
        config(tiny_demo, tmp_path, model={"conditional": True})


def test_unconditional_gan_on_all_classes_is_recorded_as_all(tiny_demo, tmp_path):
    train_gan(config(tiny_demo, tmp_path, data={"train_on": "all_classes"}, output={"name": "every"},
                     train={"epochs": 1}))
    ckpt = tmp_path / "results" / "gan" / "every"
    _, record = load_generator(ckpt / "final_generator.pth")
    assert record["class_name"] == "all"
    assert json.loads((ckpt / "run_info.json").read_text())["training_images"] == 45


def test_infogan_run_saves_a_generator_with_codes(tiny_demo, tmp_path):
    cfg = config(tiny_demo, tmp_path, model={"info_categories": 3, "info_continuous": 2}, output={"name": "info"},
                 train={"epochs": 1})
    train_gan(cfg)
    G, _ = load_generator(tmp_path / "results" / "gan" / "info" / "final_generator.pth")
    assert G.z_dim == 16 + 3 + 2 and G.latent.code_names() == ["cat", "cont0", "cont1"]
    assert G(torch.randn(2, G.z_dim)).shape == (2, 3, 32, 32)


def test_cuda_options_on_cpu_train_fp32_with_one_note_and_channels_last_applies(tiny_demo, tmp_path, capsys):
    train_gan(config(tiny_demo, tmp_path, train={"epochs": 1, "precision": "bf16", "channels_last": True, "tf32": True},
                     metrics={"every": 0}))
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note:") and "train." in line]
    assert len(notes) == 1 and "train.precision=bf16, train.tf32=true apply to CUDA only" in notes[0]
    info = json.loads((tmp_path / "results" / "gan" / "tiny_hinge" / "run_info.json").read_text())
    assert info["compute"]["precision"] == "fp32" and info["compute"]["channels_last"] is True
    assert "precision: bf16" in (tmp_path / "results" / "gan" / "tiny_hinge" / "config.yaml").read_text()


def test_small_data_levers_train_resume_exactly_and_log_what_d_sees(tiny_demo, tmp_path):
    """Bilinear G, LeCam and adaptive augmentation together: the run resumes bit for bit (anchors and p are
    part of the training state), and the log shows D's scores and p."""
    def levers(root, epochs):
        raw = tiny_gan_raw(tiny_demo, root, model={"upsample": "bilinear"},
                           train={"ada_target": 0.6, "ada_speed_images": 64, "epochs": epochs, "checkpoint_every": 2},
                           metrics={"every": 0})
        raw["loss"]["lecam_weight"] = 0.3
        return build(GANConfig, raw, "test")

    train_gan(levers(tmp_path / "full", 4))
    train_gan(levers(tmp_path / "split", 2))
    train_gan(levers(tmp_path / "split", 4), resume=True)
    path = "results/gan/tiny_hinge/checkpoints/checkpoint_epoch_0004.pth"
    sa, sb = load_training_state(tmp_path / "full" / path), load_training_state(tmp_path / "split" / path)
    assert all(torch.equal(sa["D"][k], sb["D"][k]) for k in sa["D"])
    assert sa["lecam"] == sb["lecam"] and sa["ada"] == sb["ada"] and sa["lecam"]["real"] != 0
    losses = json.loads((tmp_path / "full" / "results" / "gan" / "tiny_hinge" / "losses.json").read_text())
    assert all({"d_real", "d_fake", "augment_p"} <= row.keys() for row in losses)
    assert all(0 <= row["augment_p"] <= 1 for row in losses)


def test_tensorboard_logs_scalars_and_grids_when_asked(tiny_demo, tmp_path):
    pytest.importorskip("tensorboard")
    train_gan(config(tiny_demo, tmp_path, output={"tensorboard": True}))
    events = list((tmp_path / "results" / "gan" / "tiny_hinge" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    log = EventAccumulator(str(events[0])).Reload()
    assert {"train/d_loss", "train/d_real", "metrics/fid"} <= set(log.Tags()["scalars"])
    assert "samples" in log.Tags()["images"]


def test_checkpoint_rank_prefers_fewer_screen_warnings_to_a_lower_fid():
    from training.gan.loop import checkpoint_rank

    clean = checkpoint_rank({"artefacts": "pass", "memorisation": "pass", "fidelity": "pass"}, 5.2)
    warned = checkpoint_rank({"artefacts": "pass", "memorisation": "warn", "fidelity": "pass"}, 3.9)
    assert clean < warned                                   # possible patient copies cost more than 1.3 FID
    assert checkpoint_rank({"artefacts": "pass", "memorisation": "pass", "fidelity": "pass"}, 4.0) < clean
    assert checkpoint_rank({"artefacts": "fail", "memorisation": "pass", "fidelity": "pass"}, 1.0) is None
    assert checkpoint_rank({"artefacts": "pass"}, None) is None
    lacking = checkpoint_rank({"artefacts": "pass", "memorisation": "pass", "fidelity": "insufficient"}, 3.9)
    assert lacking == warned                                # too few images to judge is no pass either


def test_reflect_padded_generator_trains_and_reloads(tiny_demo, tmp_path):
    train_gan(config(tiny_demo, tmp_path, "hinge", model={"upsample": "bilinear", "g_padding": "reflect"},
                     train={"epochs": 2}))
    G, _ = load_generator(tmp_path / "results" / "gan" / "tiny_hinge" / "best_generator.pth")
    assert G.to_image[1].padding_mode == "reflect"
    state = load_training_state(tmp_path / "results" / "gan" / "tiny_hinge" / "checkpoints" / "checkpoint_epoch_0002.pth")
    assert state["D"]["features.0.weight_orig"].shape[1] == 3


def test_when_every_checkpoint_fails_its_screen_the_lowest_fid_is_chosen_and_says_what_failed(tiny_demo, tmp_path,
                                                                                             monkeypatch, capsys):
    from training.gan.loop import Monitor

    real_screen = Monitor.screen

    def failing_screen(self, fakes):
        verdicts, measures = real_screen(self, fakes)
        return {**verdicts, "fidelity": "fail"}, measures

    monkeypatch.setattr(Monitor, "screen", failing_screen)
    summary = train_gan(config(tiny_demo, tmp_path, train={"epochs": 2}))
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "results" / "gan" / "tiny_hinge" / "metrics.json").read_text())
    lowest = min(metrics["history"], key=lambda h: h["fid"])
    assert summary["best_fid"] == lowest["fid"]
    assert metrics["best"]["epoch"] == lowest["epoch"] and metrics["best"]["screen"]["fidelity"] == "fail"
    assert "the lowest FID of all" in metrics["best"]["reason"]
    assert f"best_generator.pth: epoch {lowest['epoch']}," in out and "fidelity fail" in out
    assert "every check passed" not in out
