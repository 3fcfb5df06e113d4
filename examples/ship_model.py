"""Ship a training run's model package as the repository's `model/` (what `make demo`'s run becomes).

    .venv/bin/python examples/ship_model.py outputs/runs/<run> [--card model/MODEL_CARD.md]

Re-saves the run's `model/` with its backbone in float16 (half the file; loading casts it back to float32, a
relative change of ~5e-4, below what the scores' 1e-4 rounding shows on most images) and the card given, or the
package's generated one. The run's metrics, split, decile edges and training config travel in model.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from perceptions.data.images import Preprocess
from perceptions.nets.package import _REQUIRED, load_package, save_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished training run folder (it has model/)")
    parser.add_argument("--out", default="model", help="where to write the shipped package")
    parser.add_argument("--card", help="MODEL_CARD.md to ship with it (default: the generated card)")
    args = parser.parse_args()
    net, meta = load_package(Path(args.run) / "model")
    extra = {k: v for k, v in meta.items() if k not in _REQUIRED or k in ("training", "metrics")}
    card = Path(args.card).read_text(encoding="utf-8") if args.card else None
    out = save_package(args.out, net, Preprocess.from_dict(meta["preprocess"]), meta["scaling"], meta=extra,
                       card=card, overwrite=True, half_backbone=True)
    print(f"shipped {args.run} as {out}")


if __name__ == "__main__":
    main()
