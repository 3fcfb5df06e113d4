"""Training on the tiny synthetic city: a step learns, a run writes every artefact, runs are deterministic,
a resumed run equals an uninterrupted one, checkpoints are atomic, and bad input is one clear line."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch

from perceptions.cli import main
from perceptions.train.config import TrainConfig

pytestmark = pytest.mark.slow

STUDIES = ["safe", "lively", "beautiful", "wealthy", "boring", "depressing"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """32 px images make steps so small that a second thread only waits on the first (~4x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(data, out, **changes) -> TrainConfig:
    base = dict(data=str(data), out=str(out), image_size=32, batch_size=8, freeze_epochs=1, epochs=2,
                lr=3e-3, loss="both", workers=0, progress=False, device="cpu", seed=3)
    return TrainConfig(**{**base, **changes})


def read_summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def finished_run(tiny_city, tmp_path_factory):
    from perceptions.train.loop import train

    return train(tiny_config(tiny_city, tmp_path_factory.mktemp("runs")))


# ---------------------------------------------------------------------------------------------- learning

def test_one_training_step_lowers_the_loss_on_a_fixed_batch(tiny_city):
    from perceptions.data.datasets import ImageScores
    from perceptions.data.images import Preprocess, eval_transform
    from perceptions.nets.perception_net import build_net
    from perceptions.train.schedule import make_optimizer, set_lr
    from perceptions.train.step import batch_loss, train_step
    from perceptions.runtime import choose_precision

    config = tiny_config(tiny_city, "unused", loss="regression", lr=1e-3)
    net, _ = build_net("efficientnet_lite0", STUDIES, weights="packaged")
    pre = Preprocess(input_size=32)
    paths = sorted((tiny_city / "images").iterdir())[:8]
    targets = np.random.default_rng(0).uniform(1, 10, size=(8, 6)).astype(np.float32)
    targets[0, 1] = np.nan  # an unrated cell rides along
    images = ImageScores(paths, targets, eval_transform(pre), 32)
    batch = tuple(torch.utils.data.default_collate([images[i] for i in range(8)]))
    precision = choose_precision(torch.device("cpu"), amp=False)
    optimizer = make_optimizer(net, config, "finetune")
    set_lr(optimizer, 1.0)
    net.train()

    def loss_now():
        torch.manual_seed(0)  # same dropout mask before and after
        with torch.no_grad():
            return batch_loss(net, batch, config, "cpu").item()

    before = loss_now()
    train_step(net, batch, optimizer, precision.grad_scaler(), config, "cpu",
               [p for p in net.parameters() if p.requires_grad])
    assert loss_now() < before


def test_a_nan_loss_stops_the_run_with_a_clear_error():
    from perceptions.errors import PerceptionsError
    from perceptions.nets.perception_net import PerceptionHead
    from perceptions.train.step import train_step

    head = PerceptionHead(4, 2)
    optimizer = torch.optim.AdamW(head.parameters())
    features = torch.tensor([[1.0, float("nan"), 0.0, 0.0]] * 2)
    batch = (features, torch.ones(2, 2), torch.ones(2, dtype=torch.bool))
    config = TrainConfig(data="unused")
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with pytest.raises(PerceptionsError, match="loss became nan"):
        train_step(head, batch, optimizer, scaler, config, "cpu", list(head.parameters()))


def test_lr_schedule_warms_up_then_decays():
    from perceptions.train.schedule import MIN_LR_FRACTION, lr_factor

    factors = [lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] == pytest.approx(MIN_LR_FRACTION, abs=1e-3)


# ------------------------------------------------------------------------------------------------- a run

def test_a_run_writes_every_artefact(finished_run, tiny_city):
    from perceptions.nets.package import load_package

    run = finished_run
    for name in ("config.json", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt", "curves.png",
                 "test_predictions.csv", "evaluation/pred_vs_true.png", "evaluation/decile_confusion.png",
                 "summary.json", "model/model.json", "model/model.safetensors"):
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.tmp")), "no temporary file may remain"

    config = json.loads((run / "config.json").read_text())
    assert config["config"]["backbone"] == "efficientnet_lite0"
    assert "git_revision" in config["environment"] and config["environment"]["torch"] == torch.__version__

    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3]
    assert metrics["phase"].tolist() == ["frozen", "finetune", "finetune"]
    assert {"train_loss", "val_loss", "val_spearman", "val_within1", "val_pairwise"} <= set(metrics.columns)

    summary = read_summary(run)
    assert set(STUDIES) <= set(summary["test"])
    for s in STUDIES:
        m = summary["test"][s]
        assert m["n"] > 0 and {"acc_within_1_decile", "spearman", "pairwise_acc", "spearman_truth"} <= set(m)
    assert summary["best_epoch"] in (1, 2, 3) and summary["timings_s"]["total_s"] > 0

    predictions = pd.read_csv(run / "test_predictions.csv")
    assert len(predictions) == summary["data"]["test"]
    scores = predictions[[f"{s}_score" for s in STUDIES]].to_numpy()
    assert np.all((scores >= 1) & (scores <= 10))

    net, meta = load_package(run / "model")
    assert meta["studies"] == STUDIES and meta["preprocess"]["input_size"] == 32
    split = meta["data"]["split"]
    assert {k: split[k] for k in ("method", "seed", "val_frac", "test_frac")} == {
        "method": "random", "seed": 3, "val_frac": 0.1, "test_frac": 0.2}
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    assert list(splits.columns) == ["location_id", "split"] and splits["location_id"].is_unique
    assert meta["metrics"]["safe"]["n"] == summary["test"]["safe"]["n"]


def test_evaluate_on_the_package_reproduces_the_run_predictions(finished_run, tiny_city):
    from perceptions.evaluate.run import evaluate_model_details

    again = evaluate_model_details(finished_run / "model", tiny_city, split="test", num_workers=0, progress=False)
    ours = pd.read_csv(finished_run / "test_predictions.csv", dtype={"location_id": str})
    joined = ours.merge(again.predictions, on="location_id", suffixes=("", "_evaluate"))
    assert len(joined) == len(ours) == read_summary(finished_run)["data"]["test"]
    for s in STUDIES:
        # Same images, same package, same precision: equal up to bf16 noise between batch shapes.
        assert np.abs(joined[f"{s}_score"] - joined[f"{s}_score_evaluate"]).max() < 0.05


def test_same_seed_gives_identical_metrics(finished_run, tiny_city, tmp_path):
    from perceptions.train.loop import train

    again = train(tiny_config(tiny_city, tmp_path))
    assert again != finished_run
    assert read_summary(again)["test"] == read_summary(finished_run)["test"]
    assert pd.read_csv(again / "metrics.csv").drop(columns="seconds").equals(
        pd.read_csv(finished_run / "metrics.csv").drop(columns="seconds"))


def test_ctrl_c_saves_and_resume_equals_the_uninterrupted_run(finished_run, tiny_city, tmp_path, caplog):
    from perceptions.train.checkpoint import load_checkpoint
    from perceptions.train.loop import train

    def press_ctrl_c(epoch, step):  # a real SIGINT in the middle of epoch 2, through the loop's handler
        if (epoch, step) == (2, 2):
            os.kill(os.getpid(), signal.SIGINT)
        return False

    config = tiny_config(tiny_city, tmp_path)
    caplog.set_level("INFO", logger="perceptions")
    with pytest.raises(KeyboardInterrupt):
        train(config, should_stop=press_ctrl_c)
    out = caplog.text
    assert "Resume with" in out and "--resume" in out
    (run,) = list(tmp_path.iterdir())
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["pos"]) == (1, 2)
    assert not (run / "summary.json").exists()

    resumed = train(config.replace(resume=str(run)))
    assert resumed == run
    assert read_summary(run)["test"] == read_summary(finished_run)["test"]
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2, 3]


def test_frozen_only_ranking_run_with_oversampling(tiny_city, tmp_path):
    from perceptions.train.loop import train

    run = train(tiny_config(tiny_city, tmp_path, epochs=0, freeze_epochs=2, loss="ranking", oversample=True))
    summary = read_summary(run)
    assert summary["epochs_run"] == 2 and np.isfinite(summary["test"]["mean"]["pairwise_acc"])


# -------------------------------------------------------------------------------------------- checkpoints

def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from perceptions.errors import PerceptionsError
    from perceptions.train.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def dies_half_way(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]

    torch.save({"not": "ours"}, tmp_path / "other.pt")
    with pytest.raises(PerceptionsError):
        load_checkpoint(tmp_path / "other.pt")


# ---------------------------------------------------------------------------------------------- bad input

def run_cli(capsys, *args) -> tuple[int, str]:
    code = main(["train", *args])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code, err):
    assert code == 2
    assert err.startswith("perceptions train: error:") and "\n" not in err, err


def test_bad_input_is_one_clear_line_and_writes_nothing(tiny_city, copy_city, tmp_path, capsys):
    out = tmp_path / "runs"
    common = ["--out", str(out), "--image-size", "32", "--epochs", "1", "--no-progress"]

    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(capsys, "--data", str(empty), *common)
    assert_one_line_error(code, err)
    assert "images" in err

    no_scores = copy_city("no_scores")
    (no_scores / "qscores.tsv").unlink()
    code, err = run_cli(capsys, "--data", str(no_scores), *common)
    assert_one_line_error(code, err)
    assert "qscores" in err

    safe_only = copy_city("safe_only")
    q = pd.read_csv(safe_only / "qscores.tsv", sep="\t", index_col=0, dtype=str)
    q[q["study_id"] == "50a68a51fdc9f05596000002"].to_csv(safe_only / "qscores.tsv", sep="\t")
    code, err = run_cli(capsys, "--data", str(safe_only), "--studies", "safe,beautiful", *common)
    assert_one_line_error(code, err)
    assert "beautiful" in err

    code, err = run_cli(capsys, "--data", str(tiny_city), "--backbone", "no_such_net_v9", *common)
    assert_one_line_error(code, err)

    from safetensors.torch import save_file
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(wrong))
    code, err = run_cli(capsys, "--data", str(tiny_city), "--weights", str(wrong), *common)
    assert_one_line_error(code, err)

    assert not out.exists() or not any(out.iterdir()), "a failed start must not leave a run folder"


def test_resume_from_another_config_is_refused(finished_run, tiny_city, copy_city, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()}
    run = tmp_path / "copy_of_run"
    import shutil
    shutil.copytree(finished_run, run)
    (run / "summary.json").unlink()  # pretend it was interrupted

    code, err = run_cli(capsys, "--resume", str(run), "--backbone", "resnet18")
    assert_one_line_error(code, err)
    assert "backbone" in err
    code, err = run_cli(capsys, "--resume", str(run), "--data", str(copy_city("other")))
    assert_one_line_error(code, err)
    code, err = run_cli(capsys, "--resume", str(run), "--studies", "safe")
    assert_one_line_error(code, err)
    code, err = run_cli(capsys, "--resume", str(finished_run))
    assert_one_line_error(code, err)
    assert "finished" in err
    assert before == {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()}


def test_cli_resume_keeps_the_saved_config_and_applies_typed_options(tmp_path):
    import argparse

    from perceptions.commands.train import add_arguments
    from perceptions.files import write_json
    from perceptions.train.config import config_from_args

    saved = TrainConfig(data="some/data", backbone="resnet18", epochs=3, image_size=64, workers=0)
    write_json(tmp_path / "config.json", {"config": saved.to_dict()})
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--resume", str(tmp_path), "--epochs", "5"]))
    assert (config.backbone, config.image_size, config.data) == ("resnet18", 64, "some/data")
    assert config.epochs == 5 and config.resume == str(tmp_path)
    # A typed value equal to the default still counts: the saved run had 3 epochs, the default is more.
    default_epochs = TrainConfig(data="x").epochs
    config = config_from_args(parser.parse_args(["--resume", str(tmp_path), "--epochs", str(default_epochs)]))
    assert config.epochs == default_epochs
    # Nothing typed: the saved value, not the default.
    assert config_from_args(parser.parse_args(["--resume", str(tmp_path)])).epochs == 3


def test_train_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--studies", "--backbone", "--freeze-epochs", "--loss", "--resume", "--amp",
                 "--oversample", "--image-size", "--max-images"):
        assert flag in text


# --------------------------------------------------------------------------------------------------- demo

def test_demo_makes_the_city_trains_and_prints_the_table(tmp_path, capsys):
    from perceptions.errors import PerceptionsError
    from perceptions.commands.demo import ensure_city, run_demo

    city = {"n_images": 40, "n_cities": 2, "votes_per_image": 4, "seed": 1}
    tiny = {"image_size": 32, "freeze_epochs": 1, "epochs": 1, "batch_size": 8}
    result = run_demo(tmp_path / "synthetic", tmp_path / "runs", recipe=tiny, city=city, device="cpu",
                      progress=False)
    out = capsys.readouterr().out
    assert "[1/3]" in out and "[2/3]" in out and "[3/3]" in out and str(result["run_dir"]) in out
    assert "sp~truth" in out and "label~truth" in out and "target" in out
    assert "native bf16 on this CPU:" in out and "training precision: fp32" in out and "wall time" in out
    assert set(STUDIES) <= set(result["metrics"])

    images_before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "synthetic" / "images").iterdir())
    ensure_city(tmp_path / "synthetic", city, say=print)  # same parameters: reused, not redrawn
    assert "reusing" in capsys.readouterr().out
    assert images_before == sorted(p.stat().st_mtime_ns for p in (tmp_path / "synthetic" / "images").iterdir())

    with pytest.raises(PerceptionsError):  # made with other parameters: left alone
        ensure_city(tmp_path / "synthetic", {**city, "seed": 2}, say=print)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PerceptionsError):
        ensure_city(foreign, city, say=print)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_resume_with_more_epochs_runs_to_the_new_count(tiny_city, tmp_path, capsys):
    """`train --resume RUN --epochs N` runs to N fine-tuning epochs, even when N is the default, and a refused
    option writes nothing."""
    from perceptions.train.loop import train

    config = tiny_config(tiny_city, tmp_path, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        train(config, should_stop=lambda epoch, step: (epoch, step) == (2, 1))
    (run,) = list(tmp_path.iterdir())
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    capsys.readouterr()  # the interrupted run's own log
    code, err = run_cli(capsys, "--resume", str(run), "--image-size", "64")
    assert_one_line_error(code, err)
    assert "--image-size" in err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()) == before

    epochs = TrainConfig(data="x").epochs  # typed, though equal to the default: it still counts
    assert main(["train", "--resume", str(run), "--epochs", str(epochs), "--no-progress"]) == 0
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == list(range(1, 1 + 1 + epochs))
    assert read_summary(run)["epochs_run"] == 1 + epochs


# ------------------------------------------------------------------------------ fine-tuning later stages only

def _tiny_batch(tiny_city, size: int, n: int = 8):
    from perceptions.data.datasets import ImageScores
    from perceptions.data.images import Preprocess, eval_transform

    paths = sorted((tiny_city / "images").iterdir())[:n]
    targets = np.random.default_rng(0).uniform(1, 10, size=(n, 6)).astype(np.float32)
    images = ImageScores(paths, targets, eval_transform(Preprocess(input_size=size)), size)
    return images, tuple(torch.utils.data.default_collate([images[i] for i in range(n)]))


def test_frozen_stages_get_no_gradient_and_do_not_change(tiny_city):
    """--frozen-stages 5: a fine-tuning step leaves the stem and the first block groups (weights and batch-norm
    statistics, even with --no-freeze-bn) exactly as they were, gives them no gradient and keeps them out of
    the optimiser, while the later stages and the head learn."""
    from perceptions.nets.backbones import split_backbone
    from perceptions.nets.perception_net import build_net
    from perceptions.predict.inference import NetForward
    from perceptions.runtime import choose_precision
    from perceptions.train.schedule import make_optimizer, set_lr
    from perceptions.train.step import train_step

    config = tiny_config(tiny_city, "unused", loss="regression", frozen_stages=5, freeze_bn=False)
    net, _ = build_net("efficientnet_lite0", STUDIES, weights="packaged")
    _, batch = _tiny_batch(tiny_city, 64)
    optimizer = make_optimizer(net, config, "finetune")
    set_lr(optimizer, 1.0)
    prefix, _, frozen = split_backbone(net.backbone, 5)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert frozen and not any(id(p) in in_optimizer for p in frozen)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    norms = lambda module: [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # noqa: E731
    assert not any(m.training for m in norms(prefix)) and all(m.training for m in norms(net.backbone.blocks[5]))
    precision = choose_precision(torch.device("cpu"), amp=False)
    train_step(NetForward(net, precision), batch, optimizer, precision.grad_scaler(), config, "cpu",
               [p for p in net.parameters() if p.requires_grad])
    assert all(p.grad is None for p in frozen)
    after = net.state_dict()  # weights and batch-norm running statistics of the stem and block groups 0-3
    frozen_keys = [k for k in after
                   if k.startswith(("backbone.conv_stem.", "backbone.bn1.", *(f"backbone.blocks.{i}." for i in range(4))))]
    assert any("running_mean" in k for k in frozen_keys)
    assert all(torch.equal(before[k], after[k]) for k in frozen_keys)
    later = [k for k in after if k.startswith(("backbone.blocks.5.", "head."))]
    assert any(not torch.equal(before[k], after[k]) for k in later)


def test_cached_stage_maps_equal_the_live_forward(tiny_city):
    """The cache holds what the frozen stages compute on each picture and on its mirror image (to float16
    rounding); its pooled features are the backbone's; the later stages on a cached map give the net's output."""
    from perceptions.nets.backbones import split_backbone
    from perceptions.nets.perception_net import build_net
    from perceptions.runtime import choose_precision
    from perceptions.train.stage_cache import LaterStages, StageCache

    torch.manual_seed(0)
    net, _ = build_net("efficientnet_lite0", STUDIES, weights="packaged")
    net.eval()
    images, (x, _, _) = _tiny_batch(tiny_city, 64, n=6)
    precision = choose_precision(torch.device("cpu"), amp=False)
    cache = StageCache.compute(net, 5, images, np.arange(10, 16), True, torch.device("cpu"), precision, 4)
    prefix, _, _ = split_backbone(net.backbone, 5)
    with torch.no_grad():
        live, mirrored = prefix(x), prefix(torch.flip(x, dims=[3]))
        whole, features = net(x), net.features(x)
    assert cache.maps.shape == (2, 6, 80, 4, 4) == (2, *live.shape) and cache.maps.dtype == torch.float16
    scale = float(live.abs().max())
    np.testing.assert_allclose(cache.maps[0].float(), live, atol=2e-3 * scale)
    np.testing.assert_allclose(cache.maps[1].float(), mirrored, atol=2e-3 * scale)
    assert not np.allclose(cache.maps[1].float(), live, atol=2e-3 * scale)  # the mirror image is another picture
    np.testing.assert_allclose(cache.pooled, features, rtol=1e-4, atol=1e-5)
    assert cache.rows.tolist() == list(range(10, 16)) and bool(cache.ok.all())
    with torch.no_grad():
        np.testing.assert_allclose(LaterStages(net, precision, 5)(cache.maps[0].float()), whole, atol=0.02)


def test_map_batches_split_each_global_batch_between_ranks_as_image_batches_do():
    """Two ranks' batches together are one process's batches of the doubled size, with the same mirror-image
    draws; the draws depend on (seed, epoch) only."""
    from perceptions.train.stage_cache import MapBatches, StageCache

    n = 20
    maps = torch.arange(2 * n, dtype=torch.float16).view(2, n, 1, 1, 1)  # value = view * n + item
    cache = StageCache(maps, torch.zeros(n, 4), torch.zeros(n, 6), torch.ones(n, dtype=torch.bool),
                       np.arange(100, 100 + n))
    order = lambda epoch: np.random.default_rng(epoch).permutation(np.arange(100, 100 + n))  # noqa: E731
    one = [b[0].flatten().tolist() for b in MapBatches(cache, order, 8, seed=5).batches(2)]
    ranks = [[b[0].flatten().tolist() for b in MapBatches(cache, order, 4, 5, rank=r, world=2).batches(2)]
             for r in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(b) for b in one]
    values = [v for b in one for v in b]
    assert sorted(int(v) % n for v in values) == list(range(n))  # every image once
    assert {int(v) // n for v in values} == {0, 1}                # as it is and mirrored
    again = [b[0].flatten().tolist() for b in MapBatches(cache, order, 8, seed=5).batches(2, start=1)]
    assert again == one[1:]


def test_a_run_on_cached_stages_resumes_exactly_and_its_head_phase_is_unchanged(tiny_city, tmp_path):
    """A run that fine-tunes later stages on cached maps: interrupted in its second fine-tuning epoch and
    resumed, it ends as the uninterrupted run does; its head-only epoch equals the one of a run without the
    cache (the pooled features come from the same pass)."""
    from perceptions.train.loop import train

    config = tiny_config(tiny_city, tmp_path / "a", frozen_stages=5, augment="flip")
    whole = train(config)
    with pytest.raises(KeyboardInterrupt):
        train(config.replace(out=str(tmp_path / "b")), should_stop=lambda epoch, step: (epoch, step) == (3, 1))
    (run,) = list((tmp_path / "b").iterdir())
    train(config.replace(out=str(tmp_path / "b"), resume=str(run)))
    assert read_summary(run)["test"] == read_summary(whole)["test"]
    a, b = (pd.read_csv(r / "metrics.csv").drop(columns="seconds") for r in (whole, run))
    assert a.equals(b) and a["phase"].tolist() == ["frozen", "finetune", "finetune"]
    live = train(config.replace(out=str(tmp_path / "c"), cache_stages=False))
    c = pd.read_csv(live / "metrics.csv").drop(columns="seconds")
    np.testing.assert_allclose(a.iloc[0, 2:].astype(float), c.iloc[0, 2:].astype(float), rtol=1e-5)


def test_a_frozen_stage_count_the_backbone_lacks_is_one_line_before_anything_is_written(tiny_city, tmp_path,
                                                                                     capsys):
    code, err = run_cli(capsys, "--data", str(tiny_city), "--out", str(tmp_path / "runs"), "--frozen-stages", "9",
                        "--image-size", "32", "--no-progress")
    assert_one_line_error(code, err)
    assert "--frozen-stages 9" in err and "8 stages" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("changes, route", [
    (dict(epochs=0, freeze_epochs=1), "features"),                                 # head-only run
    (dict(epochs=1, freeze_epochs=1, frozen_stages=5, augment="flip"), "maps"),    # later stages fine-tuned
])
def test_decile_edges_from_the_run_caches_match_decoding_the_images(tiny_city, tmp_path, monkeypatch, changes,
                                                                    route):
    """The decile edges are fitted on the training split's outputs taken from the run's own caches (frozen
    features, early-stage maps) instead of decoding every training image again: the same outputs as the decoded
    route, to the maps' float16 rounding."""
    from perceptions.train import finish
    from perceptions.train.loop import train

    real, seen = finish.cached_train_outputs, []

    def checked(net, config, device, precision, cached, n_train, as_cached):
        outputs = real(net, config, device, precision, cached, n_train, as_cached)
        assert outputs is not None, "the run's caches were not used"
        seen.append("maps" if "stage_cache" in cached else "features")
        data = net_data[0]
        _, decoded = finish.split_scores(net, preprocess[0], data, config, device, precision, "train")
        np.testing.assert_allclose(finish.to_scores(outputs), decoded, atol=2e-3 if route == "maps" else 1e-4)
        return outputs

    net_data, preprocess = [], []
    real_fit = finish.fit_prediction_deciles

    def fit(net, pre, data, *args, **kwargs):
        net_data.append(data)
        preprocess.append(pre)
        return real_fit(net, pre, data, *args, **kwargs)
    monkeypatch.setattr(finish, "cached_train_outputs", checked)
    monkeypatch.setattr(finish, "fit_prediction_deciles", fit)
    train(tiny_config(tiny_city, tmp_path, **changes))
    assert seen == [route]


def test_the_recipe_freezes_stages_only_on_the_backbones_it_was_measured_on(tiny_city, tmp_path):
    """--frozen-stages unset: 5 for EfficientNet-Lite (the measured recipe), 0 for any other backbone, so
    `--backbone convnext_tiny` works without the flag; a typed value wins; the run records the number."""
    from perceptions.train.loop import train

    assert TrainConfig(data="x").frozen_stage_count == 5
    assert TrainConfig(data="x", backbone="efficientnet_lite2").frozen_stage_count == 5
    assert TrainConfig(data="x", backbone="resnet50").frozen_stage_count == 0
    assert TrainConfig(data="x", backbone="convnext_tiny").frozen_stage_count == 0
    assert TrainConfig(data="x", frozen_stages=0).frozen_stage_count == 0
    # A run recorded before --frozen-stages existed fine-tuned the whole net, and resumes so.
    legacy = {k: v for k, v in TrainConfig(data="x").to_dict().items() if k != "frozen_stages"}
    assert TrainConfig.from_dict(legacy).frozen_stage_count == 0
    assert TrainConfig.from_dict(TrainConfig(data="x").to_dict()).frozen_stage_count == 5
    run = train(tiny_config(tiny_city, tmp_path, epochs=0, freeze_epochs=1))
    assert json.loads((run / "config.json").read_text())["config"]["frozen_stages"] == 5
