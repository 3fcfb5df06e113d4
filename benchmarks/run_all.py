"""Run every benchmark and write benchmarks/results.json and benchmarks/RESULTS.md (what `make bench` does).

    .venv/bin/python -m benchmarks.run_all            # the full set, ~8 minutes on 2 quiet CPU cores
    .venv/bin/python -m benchmarks.run_all --quick    # a smoke run on tiny inputs, written to benchmarks/_work/quick/
    .venv/bin/python -m benchmarks.run_all --only loading,predict
    .venv/bin/python -m benchmarks.run_all --render   # rewrite RESULTS.md from results.json

One failing benchmark does not stop the others: its entry records the error.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.bench_serve import section as serve_section
from benchmarks.common import BENCH_DIR, WORK, OutsideLoad, load_average, machine

# (key, module, kwargs of run() for the full set, kwargs for --quick), in the order they run: the one-process
# speed ratios first, then the subprocess and end-to-end ones.
BENCHES = (
    ("train_pipeline", "benchmarks.bench_train_pipeline", {}, {"quick": True}),
    ("predict", "benchmarks.bench_predict", {}, {"quick": True}),
    ("loading", "benchmarks.bench_loading", {}, {"quick": True}),
    ("large_images", "benchmarks.bench_large_images", {}, {"quick": True}),
    ("frozen", "benchmarks.bench_frozen", {}, {"quick": True}),
    ("scoring", "benchmarks.bench_scoring", {}, {"n_votes": 60_000, "package_votes": 2_000, "end_to_end": False}),
    ("memory", "benchmarks.bench_memory", {}, {"quick": True}),
    ("time_to_quality", "benchmarks.bench_time_to_quality", {}, {"quick": True}),
    ("serve", "benchmarks.bench_serve", {}, {"quick": True}),
)


def scoring_entry(result: dict) -> dict:
    """bench_scoring.run() returns flat figures; give them the shape of the others."""
    same = max(result.get("max_abs_diff_mu", 1), result.get("max_abs_diff_sigma", 1)) < 1e-9
    return {
        "title": "TrueSkill over PP2-scale votes: ours vs the `trueskill` package vote by vote",
        "inputs": {"votes": result.get("votes"), "images": result.get("images"), "studies": result.get("studies"),
                   "package_votes_timed": result.get("package_votes_timed")},
        "figures": result,
        "ratio": result.get("speedup"),
        "ratio_name": "speedup (package time extrapolated to all votes / ours)",
        "target": None,
        "verdict": "results identical" if same else "RESULTS DIFFER",
    }


def run_one(key: str, module: str, kwargs: dict) -> dict:
    print(f">> {key}: {module} {kwargs or ''}", flush=True)
    try:
        with OutsideLoad() as load:
            result = importlib.import_module(module).run(**kwargs)
        if key == "scoring":
            result = scoring_entry(result)
    except Exception as e:  # noqa: BLE001 - one broken bench must not lose the others' figures
        result = {"title": key, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:],
                  "verdict": "ERROR"}
    result["seconds"] = load.result["wall_s"]
    result["load"] = load.result
    line = result.get("verdict", "")
    if result.get("ratio") is not None:
        line = f"{result.get('ratio_name')}: {result['ratio']} ({line})"
    print(f"   {key} done in {result['seconds']:.0f} s; {line}", flush=True)
    if "error" in result:
        print(f"   ERROR: {result['error']}", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs; results go to benchmarks/_work/quick/")
    parser.add_argument("--only", default=None, help="comma list of benchmark keys: "
                        + ", ".join(k for k, *_ in BENCHES))
    parser.add_argument("--out", default=None, help="folder for results.json and RESULTS.md")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from results.json")
    args = parser.parse_args(argv)
    if args.render:
        out = Path(args.out) if args.out else (WORK / "quick" if args.quick else BENCH_DIR)
        (out / "RESULTS.md").write_text(markdown(json.loads((out / "results.json").read_text())))
        print(f"wrote {out / 'RESULTS.md'}")
        return 0
    chosen = [b for b in BENCHES if args.only is None or b[0] in args.only.split(",")]
    if not chosen:
        parser.error(f"--only: none of {args.only!r} is a benchmark")
    out = Path(args.out) if args.out else (WORK / "quick" if args.quick else BENCH_DIR)
    out.mkdir(parents=True, exist_ok=True)

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    report = {"started": started.isoformat(timespec="seconds"), "quick": args.quick, "machine": machine(),
              "benchmarks": {}}
    previous = out / "results.json"
    if previous.is_file():  # the full-size rehearsal (`make bench-scale`) is run apart: its entry is kept
        earlier = json.loads(previous.read_text())
        if "scale" in earlier:
            report["scale"] = earlier["scale"]
        if args.only:  # a partial run updates the entries it ran, keeps the others
            report["benchmarks"] = earlier.get("benchmarks", {})
    for key, module, full, quick in chosen:
        report["benchmarks"][key] = run_one(key, module, quick if args.quick else full)
        report["total_seconds"] = round(time.perf_counter() - t0, 1)
        write(report, out)  # after each bench, so an interrupted run keeps what it measured
    report["load_average_end"] = load_average()
    write(report, out)
    print(f"wrote {out / 'results.json'} and {out / 'RESULTS.md'} in {report['total_seconds']:.0f} s")
    return 0


def write(report: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "RESULTS.md").write_text(markdown(report))



# ------------------------------------------------------------------------------------------------ RESULTS.md

NUMBERED = ("train_pipeline", "predict", "loading", "frozen", "scoring", "time_to_quality", "memory",
            "large_images", "serve")
BUSY_SHARE = 0.15  # outside CPU share above which a bench's absolute figures are flagged as contaminated


def markdown(report: dict) -> str:
    benches = report["benchmarks"]
    m = report["machine"]
    lines = ["# Benchmark results", ""]
    if report.get("quick"):
        lines += ["**Quick smoke run (tiny inputs): these figures are not the benchmark.**", ""]
    lines += [
        f"Written by `make bench` (`python -m benchmarks.run_all`), started {report['started']}, "
        f"{_num(report.get('total_seconds'), 0)} s in total. How to run and what each measures: "
        "[README.md](README.md); every figure with its inputs: [results.json](results.json).",
        "",
        f"**Machine**: {m['cpu']}, {m['cores']} cores (torch threads {m['torch_threads']}), {m['memory_gb']} GB, "
        f"GPU: {m['gpu'] or 'none'}; native bf16: {'yes' if m['cpu_native_bf16'] else 'no'}; by default training "
        f"and predict run in **{m.get('default_precision', m.get('train_precision'))}** with channels_last on a "
        f"CPU (each bench says when it runs otherwise). Python {m['python']}, torch {m['torch']}, "
        f"torchvision {m['torchvision']}, timm {m['timm']}, numpy {m['numpy']}, Pillow {m['pillow']}, {m['os']}. "
        f"Load average at start {m.get('load_average')}, at end {report.get('load_average_end')}.",
        "",
        "Each figure is a median over repetitions; each ratio compares two things timed in alternation in one "
        "process (A B, B A, ...), so load from other processes falls on both sides alike.",
        "",
        "## Summary",
        "",
        "| # | Benchmark | Figure | Value | Target | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for i, key in enumerate(NUMBERED, 1):
        b = benches.get(key)
        if b is None:
            lines.append(f"| {i} | {key} | not run | | | |")
            continue
        target = b.get("target")
        target_text = (f"{b.get('target_name', '')} {_num(target, 3)}".strip() if key == "time_to_quality"
                       else f"{'<=' if b.get('higher_is_better') is False else '>='} {target}"
                       if target is not None else "")
        lines.append(f"| {i} | {b.get('title', key)} | {b.get('ratio_name') or _headline(key, b)} | "
                     f"{_num(b.get('ratio'), 3) if b.get('ratio') is not None else _headline_value(key, b)} | "
                     f"{target_text} | {b.get('verdict', '')} |")
    lines += ["", *_ceiling(benches)]
    for key in NUMBERED:
        if key in benches:
            lines += ["", *SECTIONS[key](benches[key])]
    lines += ["", *_load_table(benches), ""]
    if report.get("scale"):
        from benchmarks.scale_report import scale_section

        lines += [*scale_section(report["scale"]), ""]
    return "\n".join(lines)


def _num(value, digits=2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _headline(key: str, b: dict) -> str:
    return {"memory": "peak RSS of train / predict (MB)"}.get(key, "")


def _headline_value(key: str, b: dict) -> str:
    f = b.get("figures", {})
    if key == "memory" and "train" in f:
        return f"{f['train']['maxrss_mb']:.0f} / {f['predict']['maxrss_mb']:.0f}"
    return ""


def _error(b: dict) -> list[str]:
    return [f"**Error**: `{b['error']}`", ""] if "error" in b else []


def _ceiling(benches: dict) -> list[str]:
    rows = []
    for key, label in (("train_pipeline", "train"), ("predict", "predict")):
        b = benches.get(key, {})
        for name, f in b.get("figures", {}).items():
            if "efficiency" not in f:
                continue
            case = f.get("pipeline", f)
            ceiling = f["bare_step"]["per_s_median"] if "bare_step" in f else b["figures"]["bare_inference"][
                "per_s_median"]
            default = name.endswith(f"={b['inputs']['default_workers']}")
            rows.append(f"| {label}, {name.replace('predict ', '')}{' (default)' if default else ''} | "
                        f"{case['per_s_median']:.2f} | {ceiling:.2f} | {100 * f['efficiency']:.0f}% | "
                        f"{100 * (1 - f['efficiency']):.0f}% |")
    if not rows:
        return []
    return ["## The ceiling: how far each pipeline is from the bare model",
            "",
            "The bare model's images/s (pre-made tensors, same net, batch shapes and precision) is the most this "
            "machine can do with that backbone; the share is the median of the per-round ratios.",
            "",
            "| Pipeline | images/s | ceiling images/s | share of ceiling | below ceiling |",
            "|---|---|---|---|---|", *rows]


def _section_train(b: dict) -> list[str]:
    out = ["## 1. Training pipeline efficiency", "", *_error(b)]
    if "figures" not in b:
        return out
    i = b["inputs"]
    out += [f"{i['backbone']} ({i['weights']} weights), {i['image_size']} px, batch {i['batch_size']}, "
            f"{i['precision']} + channels_last, {i['images_per_epoch']} training images per epoch "
            f"({i['jpeg']}), {i['repeats']} alternated repetitions after a warm-up. The case is the library's "
            "`run_epoch` over `build_phase('finetune')`'s DataLoader; the ceiling is `train_step` on pre-made "
            "tensors; 'loading only' iterates the same DataLoader without the net.", "",
            "| Loader workers | pipeline img/s | bare step img/s | loading only img/s | efficiency |",
            "|---|---|---|---|---|"]
    for name, f in b["figures"].items():
        out.append(f"| {name.split('=')[1]}{' (default)' if name.endswith(str(i['default_workers'])) else ''} | "
                   f"{f['pipeline']['per_s_median']:.2f} | {f['bare_step']['per_s_median']:.2f} | "
                   f"{f['loading_only']['per_s_median']:.1f} | {f['efficiency']:.3f} |")
    serial = b["figures"].get(f"workers={i['default_workers']}") if i["default_workers"] == 0 else None
    proposal = (serial or {}).get("proposal_one_thread_loading")
    if proposal:
        out.append(f"| 0, batches loaded with torch on one thread (a proposal, not the library's behaviour) | "
                   f"{proposal['per_s_median']:.2f} | {serial['bare_step']['per_s_median']:.2f} | | "
                   f"{proposal['efficiency']:.3f} |")
    if serial:
        share = serial["bare_step"]["per_s_median"] / serial["loading_only"]["per_s_median"]
        out += ["", f"With workers=0 the loader runs between steps: loading alone takes {100 * share:.1f}% of the "
                    f"time of a bare step's images, so a quiet machine should show an efficiency near "
                    f"1 / (1 + {share:.3f}) = {1 / (1 + share):.3f}; a lower measured figure is the cost of sharing "
                    "the cores (see the load table)."]
    return out


def _section_predict(b: dict) -> list[str]:
    out = ["## 2. Predict efficiency", "", *_error(b)]
    if "figures" not in b:
        return out
    i = b["inputs"]
    out += [f"`predict_paths` on {i['images']} JPEGs ({i['jpeg']}), {i['backbone']} at {i['image_size']} px, "
            f"batch {i['batch_size']}, {i['precision']} + channels_last, against the same loaded net on pre-made "
            f"tensors ({i['repeats']} alternated repetitions).", "",
            "| Case | images/s (median) | min | max | efficiency |", "|---|---|---|---|---|"]
    for name, f in b["figures"].items():
        out.append(f"| {name} | {f['per_s_median']:.2f} | {f['per_s_min']:.2f} | {f['per_s_max']:.2f} | "
                   f"{_num(f.get('efficiency'), 3) if 'efficiency' in f else 'ceiling'} |")
    out += ["", "Why below the ceiling: on a CPU the net's threads already use every core, so by default predict decodes "
                "and resizes each batch in the main process between forward passes (workers=0), and the share below "
                "the ceiling is that loading time (section 3, 'ours in process', per image on one core, against the "
                "net's time per image above). A decoding worker overlaps loading with the net but takes one of the "
                "net's cores (workers=1). With a GPU, or cores to spare, workers overlap loading at little cost."]
    return out


def _section_loading(b: dict) -> list[str]:
    out = ["## 3. Data loading: ours vs the original approach", "", *_error(b)]
    if "figures" not in b:
        return out
    i, f = b["inputs"], b["figures"]
    out += [f"{i.get('files', i['images'])} JPEGs ({i['jpeg']}) read {i.get('passes', 1)} times each "
            f"({i['images']} images) into {i['output']['ours']} batches of {i['batch_size']}.",
            f"Ours: {i['ours']}. Original: {i['original']}.", "",
            "| Case | images/s (median) | min | max |", "|---|---|---|---|"]
    for name in ("ours", "ours_all_cores", "original", "ours_fresh_worker", "original_fresh_worker", "ours_in_process",
                 "original_in_process", "decode_only", "decode_only_pil"):
        if name not in f:
            continue
        label = f"ours, {f[name]['workers']} workers (one per core)" if name == "ours_all_cores" else name
        out.append(f"| {label.replace('_', ' ')} | {f[name]['per_s_median']:.1f} | {f[name]['per_s_min']:.1f} | "
                   f"{f[name]['per_s_max']:.1f} |")
    out += ["", f"Speedup in the real configuration: **{b['ratio']:.2f}x** (target >= {b['target']}); per core "
                f"(both in one process, one thread): {f['speedup_per_core']:.2f}x" + (
                    f"; ours with one worker per core: {f['ours_all_cores']['speedup']:.2f}x."
                    if "ours_all_cores" in f else ".")]
    if "speedup_worker_cpu" in f:
        out += ["", f"CPU time the loading worker spends per image, ours against the original's (less skewed by other "
                    f"processes than wall time): **{f['speedup_worker_cpu']:.2f}x**; with a fresh worker each pass: "
                    f"{f.get('speedup_fresh_worker', float('nan')):.2f}x."]
    if "per_core_bound_by_decoding" in f:
        out += ["", f"JPEG decoding alone (`load_rgb`, as ours decodes: "
                    f"{f['decode_only']['per_s_median']:.0f} images/s" + (
                        f"; PIL's `open_rgb`: {f['decode_only_pil']['per_s_median']:.0f}/s" if "decode_only_pil" in f
                        else "") + f") bounds any pipeline: even with free resizing and normalisation, "
                    f"one core could go at most {f['per_core_bound_by_decoding']:.2f}x faster than the original's "
                    "pipeline on these images."]
    if "ms_per_image" in f:
        ms = f["ms_per_image"]
        out += ["", f"Per image (ms, one thread): ours {ms['ours']:.3f} in wall time against the original's "
                    f"{ms['original']:.3f}, so {b['target']:g}x leaves {ms['original'] / b['target']:.3f}; the "
                    f"worker's steps: decoding {ms['decode_only']:.3f} (file opened and read included), resize "
                    f"and crop {ms['resize_only']:.3f}, stacking into the batch {ms['stack_only']:.3f}."]
    return out


def _section_frozen(b: dict) -> list[str]:
    out = ["## 4. Frozen backbone (cached features) vs full fine-tuning", "", *_error(b)]
    if "figures" not in b:
        return out
    i, f = b["inputs"], b["figures"]
    recipe = next((k for k in f if k.endswith("_epochs_frozen_seconds")), None)
    n = recipe.split("_")[0] if recipe else "?"
    out += [f"{i['backbone']}, {i['train_images']} training + {i['val_images']} validation images, batch "
            f"{i['batch_size']}, {i['precision']}; an epoch includes its validation.", "",
            "| | seconds |", "|---|---|",
            f"| feature cache, once ({f['cached_images']} images) | {f['feature_cache_seconds']:.2f} |",
            f"| frozen epoch (head on cached features) | {f['frozen_epoch_seconds']:.3f} |",
            f"| fine-tuning epoch | {f['finetune_epoch_seconds']:.2f} |",
            *([f"| {n} epochs frozen, cache included | {f[recipe]:.1f} |",
               f"| {n} epochs fine-tuning | {f[f'{n}_epochs_finetune_seconds']:.1f} |"] if recipe else []),
            "", f"Per epoch the frozen phase is **{b['ratio']}x** faster; the cache costs "
                f"{f['cache_pays_off_after_epochs']:.2f} fine-tuning epochs' time, so it pays off from the first "
                "frozen epoch."]
    return out


def _section_scoring(b: dict) -> list[str]:
    out = ["## 5. Votes to scores (TrueSkill)", "", *_error(b)]
    if "figures" not in b:
        return out
    f = b["figures"]
    out += [f"{f['votes']:,} synthetic votes (PP2 scale: {f['images']:,} images, {f['studies']} studies, ~13% ties).",
            "", "| | seconds |", "|---|---|",
            f"| ours (`score_votes`, all votes) | {f['ours_seconds']} |",
            f"| `trueskill` package vote by vote, {f['package_votes_timed']:,} votes | "
            f"{f['package_seconds_on_sample']} |",
            f"| `trueskill` package, extrapolated to all votes | {f['package_seconds_extrapolated']} |"]
    if "end_to_end_seconds" in f:
        out.append(f"| `score_file` end to end (CSV in, qscores.tsv out) | {f['end_to_end_seconds']} |")
    out += ["", f"Speedup **{f['speedup']}x**; largest difference from the package on the timed votes: "
                f"mu {f['max_abs_diff_mu']:.1e}, sigma {f['max_abs_diff_sigma']:.1e} ({b['verdict']})."]
    return out


def _section_quality(b: dict) -> list[str]:
    out = ["## 6. Time to quality", "", *_error(b)]
    if "figures" not in b:
        return out
    head = ["| Run | backbone (weights) | wall s | test images | Spearman vs labels | Spearman vs truth | "
            "labels vs truth | within 1 decile (mean / min) | pairwise acc |", "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    runs = ([("main job", b["figures"]["main_job"])] if "main_job" in b["figures"] else []) + \
        [("backbones", r) for r in b["figures"].get("backbones", {}).values()]
    for label, r in runs:
        mean = r["mean"]
        rows.append(f"| {label} | {r['backbone']} ({r['weights']}) | {r['wall_seconds']:.0f} | {r['test_images']} | "
                    f"{_num(mean.get('spearman'), 3)} | {_num(mean.get('spearman_truth'), 3)} | "
                    f"{_num(mean.get('label_spearman_truth'), 3)} | {_num(mean.get('acc_within_1_decile'), 3)} / "
                    f"{_num(r.get('min_within_1_decile'), 3)} | {_num(mean.get('pairwise_acc'), 3)} |")
    i = b["inputs"]
    notes = []
    if "main_job" in i:
        main = b["figures"]["main_job"]
        notes.append(f"Main job ({i['main_job']['source']}): city {i['main_job']['city']} (made once and reused: "
                     f"not counted; {_num(main.get('city_seconds'), 0)} s in this run), recipe "
                     f"{i['main_job']['recipe']}; phases (s): {main.get('timings_s')}.")
        notes += [f"Main job: {line}." for line in main.get("targets") or []]
    notes.append(f"Backbones: city {i['backbones']['city']}, recipe {i['backbones']['recipe']}; "
                 f"{i['backbones']['note']}.")
    if b.get("transfer_gain_spearman_truth") is not None:
        notes.append(f"What transfer buys (EfficientNet-Lite0 ImageNet vs untrained ResNet-18, same recipe): "
                     f"{b['transfer_gain_spearman_truth']:+.3f} Spearman against the truth.")
    return out + [*notes, "", *head, *rows]


def _section_memory(b: dict) -> list[str]:
    out = ["## 7. Peak memory", "", *_error(b)]
    if "figures" not in b:
        return out
    out += ["| Process | largest process RSS (MB) | whole tree, sampled (MB) | seconds |", "|---|---|---|---|"]
    for name, f in b["figures"].items():
        out.append(f"| {name.replace('_', ' ')} | {f['maxrss_mb']:.0f} | {f['tree_peak_mb']:.0f} | {f['seconds']} |")
    out += ["", f"train: {b['inputs']['train']}. predict: {b['inputs']['predict']}. 'import only' is the fixed cost "
                "of Python + torch + timm + perceptions. The tree figure sums workers' RSS (shared pages counted "
                "in each)."]
    return out


def _load_table(benches: dict) -> list[str]:
    rows = []
    for key, b in benches.items():
        load = b.get("load", {})
        share = load.get("outside_cpu_share")
        flag = " (contaminated)" if share is not None and share > BUSY_SHARE else ""
        rows.append(f"| {key} | {_num(load.get('wall_s'), 0)} | {_num(share, 2)}{flag} | "
                    f"{load.get('load_average_before')} | {load.get('load_average_after')} |")
    busy = [k for k, b in benches.items() if b.get("load", {}).get("outside_cpu_share", 0) > BUSY_SHARE]
    note = (f"Other processes took more than {int(100 * BUSY_SHARE)}% of the machine during: {', '.join(busy)}. "
            "Their absolute times are inflated. Alternation spreads the load over both sides of a ratio, but "
            "it does not hit them alike: work split into many small multi-threaded torch ops (decoding and "
            "resizing in the main process) stalls more than the big convolutions when other processes hold "
            "cores, so the efficiency ratios of such a run are pessimistic." if busy else
            "The machine was quiet (other processes used little CPU) during every benchmark.")
    return ["## Load during the run", "",
            "Outside CPU share = CPU time used by other processes / (wall time x cores), per benchmark.", "",
            "| Benchmark | seconds | outside CPU share | load avg before | load avg after |",
            "|---|---|---|---|---|", *rows, "", note]


def _section_large_images(b: dict) -> list[str]:
    out = ["## 8. Large images", "", *_error(b)]
    if "figures" not in b:
        return out
    i, f = b["inputs"], b["figures"]
    ms = f["ms_per_image"]
    out += [f"`predict_paths` with the shipped model ({i['backbone']}, {i['image_size']} px) on {i['photos']} photos: "
            f"{i['large']} against the same photos at {i['small']} ({i['photos_from']}; {i['repeats']} alternated "
            f"repetitions). Decoding asks libjpeg for its reduced scale (`open_rgb(min_side={i['decode_side']})`).",
            "", "| Case | ms per image (median) | images/s |", "|---|---|---|",
            f"| score 400x300 | {ms['small']:.1f} | {f['small']['per_s_median']:.2f} |",
            f"| score 4000x3000 | {ms['large']:.1f} | {f['large']['per_s_median']:.2f} |",
            f"| score 4000x3000, one decoding worker | {ms['large_one_worker']:.1f} | "
            f"{f['large_one_worker']['per_s_median']:.2f} |",
            f"| decode 400x300 (reduced, as predict does) | {ms['decode_small']:.2f} | |",
            f"| decode 4000x3000 (reduced, as predict does) | {ms['decode_large_reduced']:.1f} | |",
            f"| decode 4000x3000 at full resolution | {ms['decode_large_full']:.1f} | |",
            *([f"| score 400x300, same net at 224 px | {ms['small_224']:.1f} | "
               f"{f['at_224px']['small']['per_s_median']:.2f} |",
               f"| score 4000x3000, same net at 224 px | {ms['large_224']:.1f} | "
               f"{f['at_224px']['large']['per_s_median']:.2f} |"] if "at_224px" in f else []),
            "", f"Cost per large image / per small image: **{b['ratio']:.2f}x** (target <= {b['target']}); with one "
                f"decoding worker {f['large_one_worker']['ratio']:.2f}x. The reduced decode is "
                f"{f['decode_saving']:.1f}x faster than a full-resolution one; what is left is reading the file's "
                "entropy-coded data, which grows with its bytes."]
    if "at_224px" in f:
        floor = f["decode_floor"]
        out += ["", f"At 224 px (the same weights, an ImageNet-resolution package) the ratio is "
                    f"**{f['at_224px']['ratio']:.2f}x** ({f['at_224px']['verdict']}). At the shipped 128 px the net "
                    f"costs so little that reading the large files' entropy-coded data dominates: that reading "
                    f"alone, on all {floor['threads']} threads, is already {floor['ratio']:.2f}x a small photo's "
                    "whole cost, a floor no loader can go below on this machine."]
    return out


SECTIONS = {"train_pipeline": _section_train, "predict": _section_predict, "loading": _section_loading,
            "frozen": _section_frozen, "scoring": _section_scoring, "time_to_quality": _section_quality,
            "memory": _section_memory, "large_images": _section_large_images,
            "serve": serve_section}


if __name__ == "__main__":
    raise SystemExit(main())
