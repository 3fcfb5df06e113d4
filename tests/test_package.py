"""Model packages (safetensors + validated JSON + card) and checkpoints that can never run code when loaded."""
import json
import os
import pickle

import pytest
import torch

from perceptions.errors import PerceptionsError
from perceptions.nets.backbones import create_backbone
from perceptions.files import read_torch_file as load_checkpoint  # how checkpoints are read (train/checkpoint.py)
from perceptions.nets.package import (CARD_FILE, FORMAT_VERSION, META_FILE, WEIGHTS_FILE, load_package,
                                      preprocess_from_meta, read_package_meta, save_package)
from perceptions.nets.perception_net import build_net

SCALING = {"safe": {"lo": 18.0, "hi": 31.5, "edges": [20.0, 21.0, 22.0]},
           "wealthy": {"lo": 17.0, "hi": 33.0, "edges": [19.0, 23.0, 27.0]}}
META = {"training": {"images": 40, "data": "synthetic city"},
        "metrics": {"safe": {"within_one_decile": 0.7, "spearman": float("nan")}}}


@pytest.fixture(scope="module")
def trained():
    """A lite0 net whose backbone and head both differ from any initialisation (as after fine-tuning)."""
    torch.manual_seed(0)
    net, pre = build_net("efficientnet_lite0", ["safe", "wealthy"], weights="none")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.eval(), pre


def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_full_package_round_trip(tmp_path, trained):
    net, pre = trained
    folder = save_package(tmp_path / "model", net, pre, SCALING, META)
    assert sorted(os.listdir(folder)) == sorted([WEIGHTS_FILE, META_FILE, CARD_FILE])
    assert sorted(os.listdir(tmp_path)) == ["model"]                     # no temp folder left behind
    loaded, meta = load_package(folder)
    assert not loaded.training and loaded.studies == ["safe", "wealthy"]
    with torch.inference_mode():
        assert torch.equal(loaded(images()), net(images()))
    assert meta["format_version"] == FORMAT_VERSION and meta["backbone"] == "efficientnet_lite0"
    assert meta["scaling"] == SCALING and meta["training"]["images"] == 40
    assert meta["metrics"]["safe"]["spearman"] is None                   # NaN is not JSON: written as null
    assert preprocess_from_meta(meta) == pre
    card = (folder / CARD_FILE).read_text()
    assert "safe, wealthy" in card and "efficientnet_lite0" in card and "Intended use" in card


def test_half_backbone_package_is_half_the_size_and_scores_alike(tmp_path, trained):
    net, pre = trained
    full = save_package(tmp_path / "full", net, pre, SCALING, META)
    half = save_package(tmp_path / "half", net, pre, SCALING, META, half_backbone=True)
    size = (half / WEIGHTS_FILE).stat().st_size / (full / WEIGHTS_FILE).stat().st_size
    assert 0.45 < size < 0.55
    loaded, meta = load_package(half)
    assert meta["backbone_dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())   # cast back on load
    assert torch.equal(loaded.head.linear.weight, net.head.linear.weight)  # the head is stored exactly
    with torch.inference_mode():
        a, b = loaded(images()), net(images())
    assert not torch.equal(a, b) and torch.allclose(a, b, rtol=1e-2, atol=1e-2)


def test_head_only_package_is_small_and_rebuilds_the_packaged_backbone(tmp_path):
    torch.manual_seed(0)
    net, pre = build_net("efficientnet_lite0", ["beautiful"], weights="packaged")
    net.set_backbone_trainable(False)
    with torch.no_grad():
        net.head.linear.weight.normal_()
    net.eval()
    folder = save_package(tmp_path / "tiny", net, pre, SCALING, META, card="# My card\n", head_only=True)
    assert (folder / WEIGHTS_FILE).stat().st_size < 50_000
    assert (folder / CARD_FILE).read_text() == "# My card\n"
    loaded, meta = load_package(folder)
    assert meta["head_only"] is True
    with torch.inference_mode():
        assert torch.allclose(loaded(images()), net(images()), atol=1e-5)


def test_head_only_is_refused_for_a_fine_tuned_or_unpackaged_backbone(tmp_path, trained):
    net, pre = build_net("efficientnet_lite0", ["safe"], weights="packaged")
    with torch.no_grad():
        net.backbone.conv_stem.weight.mul_(1.01)
    with pytest.raises(PerceptionsError, match="fine-tuned"):
        save_package(tmp_path / "a", net, pre, SCALING, head_only=True)
    with pytest.raises(PerceptionsError, match="packaged"):
        save_package(tmp_path / "b", trained[0], trained[1], SCALING, head_only=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_package_is_not_overwritten_silently(tmp_path, trained):
    net, pre = trained
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(PerceptionsError, match="not empty"):
        save_package(folder, net, pre, SCALING, META)
    assert (folder / "notes.txt").read_text() == "mine"
    save_package(folder, net, pre, SCALING, META, overwrite=True)
    assert not (folder / "notes.txt").exists() and (folder / WEIGHTS_FILE).exists()
    assert sorted(os.listdir(tmp_path)) == ["model"]


@pytest.fixture()
def package(tmp_path, trained):
    return save_package(tmp_path / "model", trained[0], trained[1], SCALING, META)


def edit_meta(folder, **changes):
    meta = json.loads((folder / META_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, message", [
    ({"format_version": FORMAT_VERSION + 1}, "newer perceptions.*upgrade"),
    ({"format_version": None}, "format_version"),
    ({"studies": None}, "lacks 'studies'"),
    ({"studies": "safe"}, "'studies' has the wrong type"),
    ({"studies": ["safe", "happiness"]}, "unknown study 'happiness'"),
    ({"preprocess": {"input_size": 224}}, "preprocess: missing"),
    ({"head_only": "no"}, "'head_only' has the wrong type"),
    ({"studies": ["safe"]}, "do not fit"),                            # head has 2 outputs, JSON says 1
])
def test_bad_metadata_gives_one_clear_line(package, changes, message):
    edit_meta(package, **changes)
    with pytest.raises(PerceptionsError, match=message) as err:
        load_package(package)
    assert "\n" not in str(err.value)


def test_missing_or_broken_packages(tmp_path, package):
    with pytest.raises(PerceptionsError, match="no such model folder"):
        load_package(tmp_path / "nowhere")
    (package / META_FILE).write_text("{not json")
    with pytest.raises(PerceptionsError, match="not valid JSON"):
        read_package_meta(package)


class RunsCode:
    """Unpickling this object runs a shell command that leaves a marker file: what a malicious model does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_crafted_pickle_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    zipped, legacy = tmp_path / "evil.pt", tmp_path / "evil_legacy.pkl"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": RunsCode(marker)}, zipped)
    with open(legacy, "wb") as f:
        pickle.dump(RunsCode(marker), f)
    for path in (zipped, legacy):
        with pytest.raises(PerceptionsError) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "refused" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(PerceptionsError, match="refused"):
        create_backbone("efficientnet_lite0", str(zipped))            # --weights PATH goes the same way
    assert not marker.exists()


def test_a_pickle_posing_as_package_weights_is_refused(package, tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"w": RunsCode(marker)}, package / WEIGHTS_FILE)
    with pytest.raises(PerceptionsError, match="safetensors"):
        load_package(package)
    assert not marker.exists()


def test_plain_checkpoints_load(tmp_path):
    state = {"epoch": 3, "best": 0.5, "config": {"lr": 1e-3, "studies": ["safe"]}, "model": {"w": torch.ones(2)}}
    torch.save(state, tmp_path / "last.pt")
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
    with pytest.raises(PerceptionsError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:100])
    (tmp_path / "notes.pt").write_text("hello, not a checkpoint")
    for name in ("cut.pt", "notes.pt"):
        with pytest.raises(PerceptionsError, match="not a readable checkpoint"):
            load_checkpoint(tmp_path / name)


def label_scaling() -> dict:
    """A real Scaling dict (what load_model reads): label deciles 1..10 at edges 2, 3, ..., 10 - 0.5."""
    edges = [1.5 + k for k in range(9)]
    return {"range": [1.0, 10.0], "studies": {s: {"min": 0.0, "max": 9.0, "decile_edges": edges}
                                              for s in ("safe", "wealthy")}}


def test_a_package_with_prediction_deciles_uses_them_and_an_old_one_the_label_edges(tmp_path, trained):
    import numpy as np

    from perceptions.predict.inference import PredictionDeciles
    from perceptions.predict.model import load_model

    net, pre = trained
    # shrunk predictions: the middle of the scale, 5.0..6.0
    calibrated = PredictionDeciles.fit(np.linspace(5, 6, 101)[:, None].repeat(2, axis=1), ["safe", "wealthy"])
    new = save_package(tmp_path / "new", net, pre, label_scaling(),
                       {**META, "prediction_deciles": calibrated.to_dict()})
    old = save_package(tmp_path / "old", net, pre, label_scaling(), META)
    assert read_package_meta(new)["prediction_deciles"] == json.loads(json.dumps(calibrated.to_dict()))

    scores = np.array([[5.05, 5.95], [5.55, 9.0]])
    model = load_model(new)
    assert model.decile_source == "training predictions" and "deciles=training predictions" in repr(model)
    assert model.decile_edges is model.prediction_deciles
    assert model.deciles(scores).tolist() == [[1, 10], [6, 10]]
    legacy = load_model(old)
    assert legacy.prediction_deciles is None and legacy.decile_source == "label edges"
    assert "deciles=label edges" in repr(legacy)
    assert legacy.deciles(scores).tolist() == [[5, 6], [6, 9]]  # by the label edges 1.5, 2.5, ..., 9.5


@pytest.mark.parametrize("value, message", [
    ([1, 2, 3], "'prediction_deciles' has the wrong type"),
    ({"studies": {"safe": {"decile_edges": [1, 2, 3]}}}, "9 ascending decile edges"),
    ({"studies": {"safe": {"decile_edges": list(range(1, 10))}}}, "no edges for wealthy"),
])
def test_bad_prediction_deciles_give_one_clear_line(tmp_path, trained, value, message):
    from perceptions.predict.model import load_model

    folder = save_package(tmp_path / "model", trained[0], trained[1], label_scaling(), META)
    edit_meta(folder, prediction_deciles=value)
    with pytest.raises(PerceptionsError, match=message) as err:
        load_model(folder)
    assert "\n" not in str(err.value)
