"""RESULTS.md's section for the full-size rehearsal (benchmarks/bench_scale.py, `make bench-scale`)."""
from __future__ import annotations

STAGE_ORDER = ("synth", "score", "check", "train", "finetune", "evaluate", "predict")


def scale_section(scale: dict) -> list[str]:
    sizes = list(scale.get("sizes", {}).values())
    if not sizes:
        return []
    m = scale.get("machine", {})
    lines = [
        "## Full-size rehearsal (`make bench-scale`)",
        "",
        f"Started {scale.get('started')} on {m.get('cpu')}, {m.get('cores')} cores, native bf16: "
        f"{'yes' if m.get('cpu_native_bf16') else 'no'}; load average at start {scale.get('load_average_start')}, "
        f"at end {scale.get('load_average_end')}. Each stage runs in its own process: seconds of wall time and the "
        "largest process's peak RSS (MB); `outside` is the share of the machine other processes used meanwhile "
        f"(above 0.15 the absolute times are inflated). Fixed cost of Python + torch + timm: {scale.get('fixed_mb')} MB.",
        "",
        "| Stage | " + " | ".join(f"{s['images']:,} images ({s['votes']:,} votes)"
                                 + ("" if s.get("complete", True) else ", interrupted") + ": s / MB / outside"
                                 for s in sizes)
        + " | time exponent | memory growth | flag |",
        "|---|" + "---|" * len(sizes) + "---|---|---|",
    ]
    growth = scale.get("growth", {})
    for name in STAGE_ORDER:
        cells = []
        for s in sizes:
            st = s["stages"].get(name)
            cells.append("" if st is None else
                         f"{st['seconds']:.0f} / {st['maxrss_mb']:.0f} / {st.get('outside_cpu_share', 0):.2f}"
                         + (" (drawn earlier)" if st.get("reused") else "")
                         + (f" (measured again {st['remeasured'][:16]})" if st.get("remeasured") else ""))
        g = growth.get(name, {})
        flag = ", ".join(f for f, on in (("superlinear", g.get("superlinear")),
                                         ("memory grows", g.get("memory_grows"))) if on)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {g.get('time_exponent', '')} | "
                     f"{g.get('memory_growth', '')} | {flag} |")
    if len(sizes) < 2 or not all(s.get("complete", True) for s in sizes):
        lines += ["", "**Not the full rehearsal**: the full-size run did not complete (or did not run), so growth from "
                      "1/10 to full size is not measured yet."]
    steps = [s.get("finetune_steps", {}) for s in sizes]
    lines += ["", "Fine-tuning stage: " + "; ".join(
        f"{s['images']:,} images: {st.get('train_images', '?'):,} training images, setup {st.get('prepare_s')} s, "
        f"{st.get('steps')} steps at {st.get('images_per_s')} images/s" for s, st in zip(sizes, steps) if st) + ".",
        "",
        "Time exponent: log(t_full / t_small) / log(N_full / N_small); 1 is linear, and fixed start-up costs pull it "
        "below 1. Memory growth: peak RSS at full size over peak RSS at the small size; score, check and predict "
        "should not grow with N."]
    return lines
