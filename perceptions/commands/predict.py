"""`perceptions predict IMAGES...`: score street images with a model package (default: $PERCEPTIONS_MODEL, else
the shipped model; see `perceptions.predict.model.resolve_model_dir`)."""
import argparse
import sys

HELP = "score images (files, folders, .txt/.csv lists) with a trained model -> CSV, Parquet or GeoJSON"


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGES",
                        help="image files, folders (searched recursively for .jpg/.jpeg/.png) or a .txt/.csv "
                             "list of paths (one per line, or a 'path' column; relative to the list's folder)")
    parser.add_argument("--model", default=None, metavar="PKG",
                        help="model package folder; None: $PERCEPTIONS_MODEL when set, else the model shipped with "
                             "perceptions (the repository's model/ in a clone)")
    parser.add_argument("--out", default="predictions.csv",
                        help="output file: .csv, .parquet or .geojson (points for images with coordinates)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--workers", type=int, default=None,
                        help="image-decoding processes; default: none on a CPU (decode between batches), "
                             "enough to keep a GPU fed (2 to 8, by the cores per process) on a GPU")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="auto: as training ran by default (autocast on a GPU, fp32 on a CPU), the precision the "
                             "model's decile edges were fitted at; bf16 is faster at 224 px and up on CPUs with "
                             "native bf16, and moves scores slightly")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--resume", action="store_true",
                        help="complete an interrupted (or extend a finished) run: images already in the partial "
                             "or existing output are not scored again")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: on a terminal; in a log file one plain line every 30 s)")


def run(args) -> int:
    from perceptions.predict.job import predict_to_file

    try:
        summary = predict_to_file(args.images, args.out, model=args.model, batch_size=args.batch_size,
                                  device=args.device, num_workers=args.workers, overwrite=args.overwrite,
                                  resume=args.resume, precision=args.precision, progress=args.progress)
    except KeyboardInterrupt:
        print(f"perceptions predict: the scored batches are kept; run the same command with --resume to "
              f"finish {args.out}", file=sys.stderr)
        raise
    if "rows" in summary:  # rank 0 (the only one under torchrun that wrote the output)
        print(summary_line(summary))
    return 0


def summary_line(s: dict) -> str:
    rate = s["scored_now"] / s["seconds"] if s["seconds"] > 0 else float("nan")
    parts = [f"wrote {s['rows']} rows to {s['out']}"]
    if s["format"] == "geojson":
        parts.append(f"{s['with_coordinates']} points with coordinates")
    if s["already_done"]:
        parts.append(f"{s['already_done']} from the earlier run")
    parts.append(f"{s['scored_now']} scored now in {s['seconds']:.1f} s ({rate:.0f} images/s"
                 + (f" over {s['ranks']} processes)" if s["ranks"] > 1 else ")"))
    if s["skipped"]:
        parts.append(f"{s['skipped']} unreadable skipped, listed in {s['skipped_file']}")
    return "; ".join(parts)
