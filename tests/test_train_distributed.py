"""`train` under torchrun (gloo, 2 CPU processes): a run stopped mid-epoch and resumed with torchrun writes one
run folder with the metrics of one process with the same global batch; each rank gets a disjoint share of
every batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from perceptions.cli import leave_rank

pytestmark = pytest.mark.slow

# Per-process batch sizes of the 2-process run; the 1-process run uses twice these (the same global batch).
PER_RANK = {"batch_size": 8, "head_batch_size": 16}
COMMON = {"image_size": 32, "freeze_epochs": 1, "epochs": 1, "loss": "regression", "workers": 0,
          "progress": False, "device": "cpu", "seed": 3, "amp": False, "freeze_bn": True,
          "monitor": "val_loss",  # the fine-tuned (DDP) epoch is the best one: its weights make the test metrics
          # A tenth of the learning rate for the backbone (not the recipe's full rate): the ranks' own dropout
          # masks make the 1- and 2-process weights drift apart, and a full-rate backbone on 32 px images
          # turns that drift into val losses 20% apart after two steps, hiding what this test is about.
          "backbone_lr_mult": 0.1,
          # The whole net, as these tolerances were measured with; the default recipe's cached later stages
          # have their own test below.
          "frozen_stages": 0, "augment": "crop"}


@pytest.fixture(scope="module")
def two_runs(tiny_city, tmp_path_factory):
    """(run folder of a 2-process run, run folder of one process, the torchrun log).

    The 2-process run is stopped in the middle of its fine-tuning epoch (as Ctrl-C does; 2 processes started
    by torch.multiprocessing) and finished by `torchrun --nproc_per_node 2 -m perceptions train --resume`:
    one launch less than a separate resume test. A resumed run computes what the uninterrupted one does
    (the same seeded batches, dropout masks and weights; checked bit-for-bit by hand: validation loss 6.71693
    both ways), so the comparison with one process holds for either."""
    import torch.multiprocessing as mp

    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train

    root = tmp_path_factory.mktemp("ddp")
    config = TrainConfig(data=str(tiny_city), out=str(root / "two"), **COMMON, **PER_RANK)
    mp.spawn(_interrupted_rank, args=(2, str(root / "store"), config.to_dict(), 2, 1), nprocs=2, join=True)
    (run_dir,) = list((root / "two").iterdir())
    assert (run_dir / "checkpoints/last.pt").is_file() and not (run_dir / "summary.json").exists()

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "perceptions", "train", "--resume", str(run_dir), "--no-progress"]
    finished = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-3000:]
    assert "resuming after epoch 1, step 1" in finished.stderr  # the log goes to stderr
    folders = list((root / "two").iterdir())
    assert folders == [run_dir]  # rank 0 alone made a folder, and the resumed run wrote into it

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process: same kernels, same summation order
    try:
        one = train(config.replace(out=str(root / "one"), **{k: 2 * v for k, v in PER_RANK.items()}))
    finally:
        torch.set_num_threads(before)
    return run_dir, one, finished.stderr


def _interrupted_rank(rank, world, store, config_dict, stop_epoch, stop_step):
    """One rank of a gloo training run that stops (as Ctrl-C does) after `stop_step` of `stop_epoch`. Started
    by torch.multiprocessing.spawn; the group meets through a file, not a port."""
    import torch.distributed as dist

    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        train(TrainConfig.from_dict(config_dict), should_stop=lambda e, s: (e, s) == (stop_epoch, stop_step))
        raise AssertionError("the run was not stopped")
    except KeyboardInterrupt:
        pass
    finally:
        dist.destroy_process_group()
    leave_rank(0)


def _metrics(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").set_index("epoch")


def test_two_process_run_writes_one_complete_run_folder(two_runs):
    two, _, log = two_runs
    for name in ("config.json", "metrics.csv", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt",
                 "test_predictions.csv", "curves.png", "model"):
        assert (two / name).exists(), name
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    assert log.count("run folder:") == 2  # "run folder: ..." and "done ...; run folder: ...", rank 0 only
    assert list(_metrics(two)["phase"]) == ["frozen", "finetune"]
    test = pd.read_csv(two / "test_predictions.csv")
    n_test = json.loads((two / "summary.json").read_text())["data"]["test"]
    assert len(test) == n_test > 0 and test["path"].is_unique  # every test image evaluated exactly once


def test_two_processes_match_one_process_with_the_same_global_batch(two_runs):
    """Tolerances, and why:
    - frozen epoch (features gathered from both ranks, head steps replicated over the global batch): equal to
      float rounding (1e-5 relative);
    - fine-tuning epoch (DDP, two steps at lr 1e-3): each rank draws its own dropout masks, so the weights
      drift apart a little (the loss itself is the global masked mean: test_ddp_gradient_is_that_of_the_global_
      masked_mean checks that exactly): losses within 3% (measured on this split: validation loss 3.588 vs
      3.666, 2.1%; 0.1-0.7% with seeds 4-6); batch-norm statistics are kept fixed (--freeze-bn), otherwise each
      rank would normalise over its own 8 images instead of 16;
    - test predictions of the best checkpoint (the fine-tuned epoch) on the few test images of the tiny city:
      scores within 0.05 of each other on average (measured 0.026, where the scores spread with sd 0.25), mean
      absolute error within 0.02 (measured 2.039 vs 2.040), +-1 decile accuracy within one cell of the
      6 x n_test, pairwise accuracy within one flipped vote (measured equal). Rank statistics on five
      images move by 0.1 with one swap of two near-tied scores, so they are not compared."""
    two, one, _ = two_runs
    m2, m1 = _metrics(two), _metrics(one)
    frozen = ["train_loss", "val_loss", "val_spearman", "val_within1"]
    np.testing.assert_allclose(m2.loc[1, frozen].astype(float), m1.loc[1, frozen].astype(float), rtol=1e-5)
    assert m2.loc[2, "val_loss"] == pytest.approx(m1.loc[2, "val_loss"], rel=0.03)
    assert m2.loc[2, "train_loss"] == pytest.approx(m1.loc[2, "train_loss"], rel=0.02)

    s2, s1 = (json.loads((d / "summary.json").read_text()) for d in (two, one))
    assert s2["best_epoch"] == s1["best_epoch"] == 2
    p2, p1 = (pd.read_csv(d / "test_predictions.csv") for d in (two, one))
    scores = [c for c in p1.columns if c.endswith("_score")]
    assert (p2["path"] == p1["path"]).all() and float((p2[scores] - p1[scores]).abs().mean().mean()) < 0.05
    cell = 1 / (6 * len(p1)) + 1e-9
    for key, tolerance in (("mae", 0.02), ("acc_within_1_decile", cell), ("pairwise_acc", 0.04)):
        assert s2["test"]["mean"][key] == pytest.approx(s1["test"]["mean"][key], abs=tolerance), key


def test_cached_later_stages_under_torchrun_match_one_process(tiny_city, tmp_path):
    """The default recipe under torchrun: each rank fills its share of the early-stage cache and every rank gets
    all of it (gathered), MapBatches gives each rank its share of the global batch and DDP wraps the later
    stages. The frozen epoch equals one process's to float rounding; the fine-tuning epoch's losses agree
    within the tolerances above (each rank draws its own dropout masks)."""
    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train

    # Without --monitor: torchrun's own parser takes it for an abbreviation of its --monitor-interval (the
    # metrics compared here do not depend on which epoch is kept).
    recipe = {**{k: v for k, v in COMMON.items() if k != "monitor"}, "frozen_stages": 5, "augment": "flip"}
    config = TrainConfig(data=str(tiny_city), out=str(tmp_path / "two"), **recipe, **PER_RANK)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "perceptions", "train", "--no-progress", "--no-final-test",
           *[arg for k, v in config.to_dict().items() if k in recipe or k in PER_RANK or k in ("data", "out")
             for arg in _flag(k, v)]]
    finished = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-3000:]
    assert "early stages (5)" in finished.stderr
    (two,) = list((tmp_path / "two").iterdir())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train(config.replace(out=str(tmp_path / "one"), final_test=False,
                                   **{k: 2 * v for k, v in PER_RANK.items()}))
    finally:
        torch.set_num_threads(before)
    m2, m1 = _metrics(two), _metrics(one)
    frozen = ["train_loss", "val_loss", "val_spearman", "val_within1"]
    np.testing.assert_allclose(m2.loc[1, frozen].astype(float), m1.loc[1, frozen].astype(float), rtol=1e-5)
    assert m2.loc[2, "val_loss"] == pytest.approx(m1.loc[2, "val_loss"], rel=0.03)
    assert m2.loc[2, "train_loss"] == pytest.approx(m1.loc[2, "train_loss"], rel=0.02)


def _flag(key: str, value) -> list[str]:
    """A TrainConfig field as command-line arguments."""
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [name if value else "--no-" + key.replace("_", "-")]
    return [name, str(value)]


def test_ranks_share_each_global_batch_disjointly():
    """Rank r takes positions r, r+2, ... of each global batch: together the ranks see exactly the batches of
    one process with the doubled batch size, each image with the same augmentation seed."""
    from perceptions.train.batches import ImageBatches

    class Numbered:  # item i is the tensor [i] plus the augmentation seed it was drawn with
        def __len__(self):
            return 30

        def __getitem__(self, i):
            return torch.tensor([i]), torch.tensor([torch.initial_seed() % 1000]), True

    order = np.random.default_rng(0).permutation(30)

    def batches(batch_size, rank=0, world=1):
        source = ImageBatches(Numbered(), lambda epoch: order, batch_size, seed=5, rank=rank, world=world)
        steps = source.steps_per_epoch(1)
        found = [(b[0].flatten().tolist(), b[1].flatten().tolist()) for b in source.batches(1)]
        assert len(found) == steps
        return found

    whole = batches(8)
    shards = [batches(4, r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(whole)
    for step, (images, seeds) in enumerate(whole):
        assert shards[0][step][0] == images[0::2] and shards[1][step][0] == images[1::2]
        assert shards[0][step][1] == seeds[0::2] and shards[1][step][1] == seeds[1::2]



def _ddp_gradient_rank(rank, world, store, targets, out):
    """One rank: a linear head in DDP, this rank's share of a batch whose ranks rate different numbers of cells;
    the loss is the step's (`batch_loss`, which divides by the global counts). Rank 0 saves the gradient."""
    import torch.distributed as dist

    from perceptions.train.config import TrainConfig
    from perceptions.train.step import batch_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        head = torch.nn.Linear(4, 3)
        model = torch.nn.parallel.DistributedDataParallel(head)
        x = torch.arange(24, dtype=torch.float32).reshape(6, 4)[rank::world] / 10
        t = torch.as_tensor(targets, dtype=torch.float32)[rank::world]
        loss = batch_loss(model, (x, t, torch.ones(len(x), dtype=torch.bool)), TrainConfig(data="x"), "cpu")
        loss.backward()
        if rank == 0:
            torch.save(head.weight.grad, out)
        del model  # the DDP reducer goes before the group, and no rank leaves while another still talks
        dist.barrier()
    finally:
        dist.destroy_process_group()
    leave_rank(0)  # as `perceptions` does under torchrun: no interpreter teardown, where gloo can abort


def test_ddp_gradient_is_that_of_the_global_masked_mean(tmp_path):
    """Rank 0 rates 2 cells, rank 1 rates 7: averaging the ranks' own masked means would weigh rank 0's cells
    3.5x more; dividing by the global count gives exactly the one-process gradient of the whole batch."""
    import torch.multiprocessing as mp

    from perceptions.train.losses import masked_regression_loss

    nan = float("nan")
    targets = [[1.0, nan, nan], [2.0, 3.0, 4.0], [nan, nan, nan], [5.0, 6.0, nan], [nan, 7.0, nan],
               [8.0, nan, 9.0]]  # rows 0, 2, 4 go to rank 0 (2 cells), rows 1, 3, 5 to rank 1 (7 cells)
    out = tmp_path / "grad.pt"
    mp.spawn(_ddp_gradient_rank, args=(2, str(tmp_path / "store"), targets, str(out)), nprocs=2, join=True)
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 3)
    x = torch.arange(24, dtype=torch.float32).reshape(6, 4) / 10
    masked_regression_loss(head(x), torch.tensor(targets)).backward()
    torch.testing.assert_close(torch.load(out), head.weight.grad, rtol=1e-5, atol=1e-6)
