"""`perceptions train --init-model PKG`: a run that starts from a model package, and `evaluate --compare-model`,
which puts two models side by side on the same held-out votes."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from perceptions.cli import main
from perceptions.predict.model import DEFAULT_MODEL_DIR, load_model

COMMON = ["--device", "cpu", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def still_run(tiny_city, tmp_path_factory):
    """A run from the shipped model whose learning rate is too small to change anything."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--init-model", str(DEFAULT_MODEL_DIR), "--data", str(tiny_city), "--out", str(out),
                 "--freeze-epochs", "1", "--head-lr-frozen", "1e-12", *COMMON]) == 0
    (run,) = list(out.iterdir())
    return run


def test_a_run_starts_from_the_package_weights_and_preprocessing(still_run, tiny_city):
    base, tuned = load_model(DEFAULT_MODEL_DIR), load_model(still_run / "model")
    assert tuned.meta["preprocess"] == base.meta["preprocess"]
    assert tuned.meta["backbone"] == base.meta["backbone"]
    assert str(DEFAULT_MODEL_DIR) in tuned.meta["weights"]
    config = json.loads((still_run / "config.json").read_text())["config"]
    assert config["init_model"] == str(DEFAULT_MODEL_DIR) and config["image_size"] == 128
    # No learning: the new package scores images as the shipped one does (its own deciles aside).
    paths = sorted((tiny_city / "images").iterdir())[:6]
    a, b = base.predict(paths), tuned.predict(paths)
    for s in base.studies:
        np.testing.assert_allclose(a[f"{s}_score"], b[f"{s}_score"], atol=2e-3)
    assert "prediction_deciles" in tuned.meta


def test_defaults_for_local_fine_tuning_apply_to_options_not_typed(tiny_city, tmp_path):
    from perceptions.train.init_model import INIT_MODEL_DEFAULTS

    assert main(["train", "--init-model", str(DEFAULT_MODEL_DIR), "--data", str(tiny_city), "--out",
                 str(tmp_path), "--freeze-epochs", "4", *COMMON]) == 0
    (run,) = list(tmp_path.iterdir())
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["freeze_epochs"] == 4  # typed
    for key in ("epochs", "head_lr_frozen", "loss"):
        assert config[key] == INIT_MODEL_DEFAULTS[key]
    metrics = pd.read_csv(run / "metrics.csv")
    assert len(metrics) == 4 and (metrics["phase"] == "frozen").all()
    # The head moved away from the shipped one; the backbone (frozen phase only) did not.
    base, tuned = load_model(DEFAULT_MODEL_DIR), load_model(run / "model")
    assert not torch.allclose(base.net.head.linear.weight, tuned.net.head.linear.weight, atol=1e-5)
    for (name, p), q in zip(base.net.backbone.state_dict().items(), tuned.net.backbone.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_data_study_subset_takes_the_package_rows():
    from perceptions.nets.perception_net import build_net
    from perceptions.train.config import TrainConfig
    from perceptions.train.init_model import load_init_weights

    base = load_model(DEFAULT_MODEL_DIR)
    net, _ = build_net("efficientnet_lite0", ["depressing", "safe"], weights="none")
    pre = load_init_weights(net, TrainConfig(data="unused", init_model=str(DEFAULT_MODEL_DIR)))
    assert pre.input_size == 128
    rows = [base.studies.index("depressing"), base.studies.index("safe")]
    assert torch.equal(net.head.linear.weight, base.net.head.linear.weight[rows])
    assert torch.equal(net.head.linear.bias, base.net.head.linear.bias[rows])


def test_a_package_without_the_data_studies_is_one_line(tiny_city, tmp_path, capsys):
    from perceptions.nets.package import save_package
    from perceptions.nets.perception_net import build_net

    base = load_model(DEFAULT_MODEL_DIR)
    net, _ = build_net("efficientnet_lite0", ["safe"], weights="none")
    net.backbone.load_state_dict(base.net.backbone.state_dict())
    save_package(tmp_path / "safe_only", net, base.preprocess, {"range": [1.0, 10.0], "studies": {}})
    code = main(["train", "--init-model", str(tmp_path / "safe_only"), "--data", str(tiny_city), "--out",
                 str(tmp_path / "runs"), *COMMON])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "predicts safe, not lively, beautiful" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_missing_package_is_one_line(tiny_city, tmp_path, capsys):
    code = main(["train", "--init-model", str(tmp_path / "nope"), "--data", str(tiny_city), "--out",
                 str(tmp_path / "runs"), *COMMON])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nope" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------- compare

def test_compare_pairwise_by_hand():
    from perceptions.evaluate.compare import compare_pairwise

    ids = ["a", "b", "c", "d"]
    model = pd.DataFrame({"location_id": ids, "safe_score": [4.0, 3.0, 2.0, 1.0]})
    other = pd.DataFrame({"location_id": ids, "safe_score": [1.0, 2.0, 2.0, 4.0]})
    votes = pd.DataFrame({"study": "safe", "left": ["a", "b", "c", "a", "a", "x"],
                          "right": ["b", "c", "d", "d", "c", "a"],
                          "choice": ["left", "left", "left", "right", "equal", "left"]})
    # Counted: the four decisive votes between scored images (the tie and the unscored "x" are not).
    # model: a>b yes, b>c yes, c>d yes, d>a no -> 3/4; other: no, predicted tie b=c half, no, d>a yes -> 1.5/4.
    table = compare_pairwise(model, other, votes, ["safe"])
    assert table["safe"]["votes"] == 4
    assert table["safe"]["model"] == pytest.approx(0.75) and table["safe"]["compare"] == pytest.approx(0.375)
    assert table["safe"]["difference"] == pytest.approx(0.375)
    lo, hi = table["safe"]["difference_ci95"]
    assert lo <= 0.375 <= hi and lo < hi
    assert table["all"]["votes"] == 4


def test_evaluate_puts_two_models_side_by_side(still_run, tiny_city, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(still_run / "model"), "--compare-model", str(DEFAULT_MODEL_DIR),
                 "--data", str(tiny_city), "--json", str(out), *COMMON]) == 0
    printed = capsys.readouterr().out
    assert "pairwise accuracy on the same held-out votes (ties excluded)" in printed
    compare = json.loads(out.read_text())["compare"]
    assert compare["split"] == "test"
    pooled = compare["pairwise"]["all"]
    assert pooled["votes"] > 0
    # The run did not learn, so on the same votes the two models agree exactly.
    assert pooled["model"] == pytest.approx(pooled["compare"]) and pooled["difference"] == pytest.approx(0.0)


def test_compare_needs_votes(still_run, tiny_city, tmp_path, capsys):
    import shutil

    folder = tmp_path / "city"
    shutil.copytree(tiny_city, folder)
    (folder / "votes.tsv").unlink()
    code = main(["evaluate", "--model", str(still_run / "model"), "--compare-model", str(DEFAULT_MODEL_DIR),
                 "--data", str(folder), *COMMON])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "has no votes.tsv" in err and len(err.splitlines()) == 1


def test_the_label_ceiling_of_a_few_local_votes_is_undefined_not_an_error():
    # 13 votes of one study between images of a 100-vote local folder: the simulated crowds' concordance is
    # undefined on so sparse a design, which once made np.polyfit raise at the end of a fine-tuning run.
    from perceptions.data.folder import label_scorer
    from perceptions.evaluate.metrics import label_noise_ceiling

    pairs = """0b3593f51ff17f71e218b93b ddc08ee612ffa4c03ccfcdff equal
eb198fe7c4874f3600a58edc a4592c25d213376dc3c5310c right
13637ef08ce13f8dad041d06 36668c1da2caa5d231abea34 equal
e2ffa2d852ebbb81aea7152d 04a8c6a2f91eaf28665ba467 left
0ca53e1a20918ed0fa5563ac 17a4795431c10b0b9b69e381 left
6e4a1186243c1c2c35bec765 04a8c6a2f91eaf28665ba467 right
6e4c7b416c5ca5435966c67d 07c907f8027e2297e32a13d4 right
df2d5a180234a1331e8ad94c 936659ae273f0a8e89ed5565 right
f0a8d387b5cf41b6dbfe4729 0810d3611b012f27d9b6cdef right
fb6568e42f5910f1c685dc5a aa0b9d6dfc8b178ee383740b left
f37270d7a1ee63d8078ecf7a 062819930f3c7efb9e8de6fc right
daebd5193e377f34cc1a8e9c 2f4c1efd7657a010b67f655f right
468aa1ecc98540682ddbcec6 eb198fe7c4874f3600a58edc left"""
    votes = pd.DataFrame([line.split() for line in pairs.splitlines()], columns=["left", "right", "choice"])
    out = label_noise_ceiling(votes=votes.assign(study="boring"), score_fn=label_scorer(), seed=1, n_splits=5)
    assert set(out) == {"label_ceiling", "label_reliability"}
    assert np.isnan(out["label_ceiling"]) or 0 <= out["label_ceiling"] <= 1
