"""Benchmark 1: training pipeline efficiency, and the ceiling it is measured against.

Case: one epoch of the library's own training loop (`perceptions.train.step.run_epoch` over the batch source
`build_phase("finetune", ...)` makes: DataLoader, JPEG decoding, RandomResizedCrop + flip, normalisation,
forward, masked loss, backward, gradient clipping, AdamW step, lr schedule), images/s.
Ceiling: the same `train_step` on the same net, optimizer and precision, fed pre-made tensors of the same
batch shapes (no decoding, no augmentation): the most this machine can train this backbone at.
Efficiency = case / ceiling (target >= 0.90). Measured with the config's default loader workers and with
another worker count, each alternating with the ceiling (after one warm-up epoch of the bare step), so
outside load hits both alike.

    .venv/bin/python -m benchmarks.bench_train_pipeline [--quick]
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmarks.common import alternate, bench_city, paired_ratio, rate, timed, run_as_script, verdict

TARGET = 0.90
# The loop that decodes and augments images: the whole net on random crops (the recipe before issue 17; the default
# recipe since fine-tunes the later stages on cached maps and decodes nothing during its epochs).
WHOLE_NET = {"frozen_stages": 0, "augment": "crop"}


@dataclass
class TrainingSetup:
    """What train() builds before its first epoch, built by the same library calls."""
    config: object
    data: object
    device: object
    precision: object
    net: object
    preprocess: object


def training_setup(city, **overrides) -> TrainingSetup:
    import dataclasses

    import torch

    from perceptions.nets.perception_net import build_net
    from perceptions.train.config import TrainConfig
    from perceptions.train.prepare import prepare_data
    from perceptions.runtime import choose_device, choose_precision, seed_everything

    config = TrainConfig(data=str(city), progress=False, **overrides)
    data = prepare_data(config)
    device = choose_device(config.device)
    precision = choose_precision(device, config.amp_on(device))
    if config.workers is None:  # as train(): the runtime picks the loader's workers for the device
        from perceptions.runtime import default_workers

        config = config.replace(workers=default_workers(device))
    seed_everything(config.seed)
    net, preprocess = build_net(config.backbone, data.studies, weights=config.weights)
    # As train() does: the config may override the weights' input size and crop.
    if config.image_size:
        preprocess = dataclasses.replace(preprocess, input_size=int(config.image_size))
    if getattr(config, "crop_pct", None):
        preprocess = dataclasses.replace(preprocess, crop_pct=float(config.crop_pct))
    net = net.to(device).to(memory_format=torch.channels_last)
    return TrainingSetup(config, data, device, precision, net, preprocess)


def call_with(fn, **available):
    """Call `fn` with the arguments it names, taken from `available` by name: these benches drive the
    library's internal training functions, whose argument lists may gain or lose an item (precision, say)."""
    import inspect

    names = inspect.signature(fn).parameters
    missing = [n for n, p in names.items() if n not in available and p.default is inspect.Parameter.empty]
    if missing:
        raise TypeError(f"{fn.__qualname__} needs {missing}, which this benchmark does not know how to supply")
    return fn(**{n: available[n] for n in names if n in available})


class PhaseRunner:
    """One phase ("frozen" or "finetune") as train() runs it: build_phase, make_optimizer, the phase's grad
    scaler, then whole epochs of run_epoch; `epoch()` runs the next one and returns its mean loss."""

    def __init__(self, setup: TrainingSetup, phase: str):
        from perceptions.train.phases import build_phase
        from perceptions.train.schedule import make_optimizer
        from perceptions.runtime import Precision

        self.setup, self.phase = setup, phase
        self.timings: dict = {}
        self.build_s, built = timed(lambda: call_with(
            build_phase, phase=phase, net=setup.net, data=setup.data, preprocess=setup.preprocess,
            config=setup.config, device=setup.device, precision=setup.precision, timings=self.timings))
        self.source, self.validate, self.model_fn = built[:3]
        # As train(): the frozen phase's head runs in fp32; fine-tuning runs in the run's precision.
        self.phase_precision = (built[3] if len(built) > 3 else
                                setup.precision if phase == "finetune" else Precision(setup.device.type, None))
        self.optimizer = make_optimizer(setup.net, setup.config, phase)
        self.scaler = self.phase_precision.grad_scaler()
        self.params = [p for p in setup.net.parameters() if p.requires_grad]
        self.steps = self.source.steps_per_epoch(1)
        self.images = len(self.source.order_fn(1))
        self.next_epoch = 1

    def epoch(self) -> float:
        from contextlib import nullcontext

        from perceptions import runtime
        from perceptions.train import schedule as schedules
        from perceptions.train import step

        epoch = self.next_epoch
        self.next_epoch += 1
        state = {"epoch": epoch - 1, "pos": 0, "best": None, "best_epoch": 0, "stale": 0, "phase": self.phase,
                 "stopped_early": "", "epoch_losses": []}
        # A long schedule: the lr stays near its peak, as in the middle of a run.
        where = dict(first=1, steps=self.steps, total=self.steps * 1000, warmup=1, total_epochs=epoch)
        schedule = call_with(schedules.Schedule, **where)
        # As train(): head-only epochs run on one thread (tiny matrices), where the runtime offers that.
        threads = (runtime.cpu_threads(1) if self.phase == "frozen" and hasattr(runtime, "cpu_threads")
                   else nullcontext())
        with threads:
            return call_with(step.run_epoch, net=self.setup.net, model_fn=self.model_fn, source=self.source,
                             optimizer=self.optimizer, scaler=self.scaler, precision=self.phase_precision,
                             config=self.setup.config, device=self.setup.device, params=self.params, epoch=epoch,
                             schedule=schedule, **where, state=state, stop=lambda e, s: False, run_dir=None)

    def step(self, batch) -> float:
        from perceptions.train.step import train_step

        return call_with(train_step, model_fn=self.model_fn, batch=batch, optimizer=self.optimizer,
                         scaler=self.scaler, precision=self.phase_precision, config=self.setup.config,
                         device=self.setup.device, params=self.params)

    def batch_sizes(self) -> list[int]:
        from perceptions.train.batches import chunks

        return [s.stop - s.start for s in chunks(self.images, self.source.batch_size)]


def bare_steps(runner: PhaseRunner, seed: int = 0):
    """A callable doing runner's epoch worth of train_step calls on pre-made tensors (same batch shapes)."""
    import torch

    setup = runner.setup
    g = torch.Generator().manual_seed(seed)
    size, studies = setup.preprocess.input_size, len(setup.data.studies)
    batches = [(torch.randn(b, 3, size, size, generator=g), 1 + 9 * torch.rand(b, studies, generator=g),
                torch.ones(b, dtype=torch.bool)) for b in runner.batch_sizes()]

    def steps():
        setup.net.train()
        for batch in batches:
            runner.step(batch)
    return steps


class OneThreadLoading:
    """A proposal, measured beside the real thing: the same batch source, but each batch is decoded and
    augmented with torch limited to one thread. With workers=0 the per-image resize/normalise ops otherwise run
    on every intra-op thread, and such tiny parallel regions stall whenever another process holds a core."""

    def __init__(self, source):
        self.source = source

    def __getattr__(self, name):
        return getattr(self.source, name)

    def batches(self, epoch: int, start: int = 0):
        import torch

        batches = self.source.batches(epoch, start)
        while True:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                batch = next(batches, None)
            finally:
                torch.set_num_threads(threads)
            if batch is None:
                return
            yield batch


def with_source(runner: PhaseRunner, source):
    """runner's epoch, run over another batch source."""
    def epoch():
        real = runner.source
        runner.source = source
        try:
            return runner.epoch()
        finally:
            runner.source = real
    return epoch


def loading_only(runner: PhaseRunner):
    """A callable iterating one epoch of the batch source without touching the net (decode + augment)."""
    def load():
        for _ in runner.source.batches(runner.next_epoch):
            pass
    return load


def run(quick: bool = False, workers: tuple[int, ...] | None = None, repeats: int | None = None,
        n_images: int | None = None) -> dict:
    repeats = repeats or (1 if quick else 3)
    n_images = n_images or (48 if quick else 96)  # labelled images; ~70% of them train
    city = bench_city()
    setup = training_setup(city, max_images=n_images, batch_size=32, epochs=1, **WHOLE_NET)
    default_workers = setup.config.workers
    # The default, and one worker process decoding beside the net (the other configuration worth knowing).
    workers = workers if workers is not None else ((default_workers,) if quick else
                                                  tuple(dict.fromkeys((default_workers, 1 if default_workers != 1
                                                                       else 0))))
    figures, ratios = {}, {}
    ceiling = None
    for w in workers:
        setup.config.workers = w
        runner = PhaseRunner(setup, "finetune")
        bare = bare_steps(runner)
        bare()  # warm-up: oneDNN builds its kernels for each batch shape once (the JPEGs are in the page cache)
        cases = {"pipeline": runner.epoch, "bare": bare, "load": loading_only(runner)}
        if w == 0 and not quick:
            cases["pipeline_one_thread_loading"] = with_source(runner, OneThreadLoading(runner.source))
        times = alternate(cases, repeats=repeats, warmup=0)
        load_times = times["load"]
        ratio = paired_ratio(times["pipeline"], runner.images, times["bare"], runner.images)
        figures[f"workers={w}"] = {"pipeline": rate(times["pipeline"], runner.images),
                                   "bare_step": rate(times["bare"], runner.images),
                                   "loading_only": rate(load_times, runner.images),
                                   "efficiency": ratio}
        if "pipeline_one_thread_loading" in times:
            figures[f"workers={w}"]["proposal_one_thread_loading"] = {
                **rate(times["pipeline_one_thread_loading"], runner.images),
                "efficiency": paired_ratio(times["pipeline_one_thread_loading"], runner.images, times["bare"],
                                           runner.images)}
        ratios[w] = ratio
        ceiling = figures[f"workers={w}"]["bare_step"]["per_s_median"] if ceiling is None else ceiling
    headline = ratios[default_workers] if default_workers in ratios else next(iter(ratios.values()))
    best_w = max(ratios, key=ratios.get)
    return {
        "title": "Training pipeline efficiency (real loop / bare step on pre-made tensors)",
        "inputs": {"backbone": setup.config.backbone, "weights": setup.config.weights,
                   "image_size": setup.preprocess.input_size, "batch_size": setup.config.batch_size,
                   "precision": setup.precision.name, "channels_last": True,
                   "images_per_epoch": runner.images, "jpeg": "400x300 synthetic street scenes",
                   "default_workers": default_workers, "workers_measured": list(workers), "repeats": repeats},
        "figures": figures,
        "ceiling_images_per_s": ceiling,
        "ratio": headline,
        "ratio_name": f"efficiency (workers={default_workers}, the default)",
        "target": TARGET,
        "verdict": verdict(headline, TARGET),
        "best_workers": best_w,
        "best_ratio": ratios[best_w],
    }


if __name__ == "__main__":
    run_as_script(run, __doc__)
