"""`perceptions evaluate`: score a model package on a data folder's test split and print the metrics."""
from __future__ import annotations

import argparse
from pathlib import Path

from perceptions.errors import PerceptionsError

HELP = "measure a trained model on held-out images: decile accuracy, rank correlations, pairwise votes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from perceptions.data.labels import SPLIT_NAMES

    parser.add_argument("--model", default=None, metavar="PKG",
                        help="model package folder (a run's model/); None: $PERCEPTIONS_MODEL when set, else the "
                             "model shipped with perceptions (the repository's model/ in a clone)")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="PP2-layout folder: images/, qscores.tsv, optional votes.tsv and truth.csv")
    parser.add_argument("--split", default="test", choices=(*SPLIT_NAMES, "all"),
                        help="images to score: the split held out in training (rebuilt from the package), "
                             "or all labelled images")
    parser.add_argument("--compare-model", metavar="PKG",
                        help="a second model package (e.g. the base model a --init-model run started from) scored "
                        "on the same images: prints both models' pairwise accuracy on the same held-out votes "
                        "(both images in --model's --split; ties excluded) with the difference and a paired "
                        "bootstrap 95%% interval; --json then gains a \"compare\" entry")
    parser.add_argument("--json", metavar="FILE", help="also write the metrics as {study: {metric: value}}")
    parser.add_argument("--predictions", metavar="FILE",
                        help="also write the scored images, one row each: path, lat, lon, location_id, city, "
                             "<study>_score and <study>_decile (.csv, .parquet or .geojson)")
    parser.add_argument("--plots", metavar="DIR", help="also write pred_vs_true.png and decile_confusion.png")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --json or --predictions file, or plots")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="image-decoding workers (default: a few)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: on a terminal; plain lines in a log file)")


def run(args) -> int:
    from perceptions.evaluate.report import format_table
    from perceptions.evaluate.compare import format_comparison
    from perceptions.evaluate.run import compare_models, evaluate_model_details
    from perceptions.files import write_json
    from perceptions.predict.writers import output_format, write_table

    json_path = Path(args.json) if args.json else None
    predictions_path = Path(args.predictions) if getattr(args, "predictions", None) else None
    for path in (json_path, predictions_path):
        if path and path.exists() and not args.overwrite:
            raise PerceptionsError(f"{path} exists; pass --overwrite to replace it")
    if predictions_path:
        output_format(predictions_path)  # an unknown extension fails now, not after the evaluation
    if args.plots and not args.overwrite:
        taken = [p for p in (Path(args.plots) / "pred_vs_true.png", Path(args.plots) / "decile_confusion.png")
                 if p.exists()]
        if taken:
            raise PerceptionsError(f"{taken[0]} exists; pass --overwrite to replace it")
    options = dict(split=args.split, batch_size=args.batch_size, device=args.device, num_workers=args.workers,
                   plots_dir=args.plots, progress=args.progress)
    compare = None
    if getattr(args, "compare_model", None):
        result, compare = compare_models(args.model, args.compare_model, args.data, **options)
    else:
        result = evaluate_model_details(args.model, args.data, **options)
    for note in result.notes:
        print(f"note: {note}")
    print(f"{result.split} split: {result.n_images} images\n")
    print(format_table(result.metrics, legend=True))
    if compare is not None:
        print(f"\npairwise accuracy on the same held-out votes (ties excluded): --compare-model "
              f"{args.compare_model} against --model {args.model or 'the default model'}\n")
        print(format_comparison(compare, "model", "compare-model"))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, result.metrics if compare is None else
                   {**result.metrics, "compare": {"model": args.model, "compare_model": args.compare_model,
                                                  "split": result.split, "pairwise": compare}})
        print(f"\nmetrics written to {json_path}")
    if predictions_path:
        predictions_path.parent.mkdir(parents=True, exist_ok=True)
        write_table(result.predictions, predictions_path)
        print(f"{len(result.predictions)} scored images written to {predictions_path}")
    for p in result.plots:
        print(f"plot written to {p}")
    return 0
