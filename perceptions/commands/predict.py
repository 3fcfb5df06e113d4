"""`perceptions predict IMAGES...`: score street images with a model package (default: $PERCEPTIONS_MODEL, else
the shipped model; see `perceptions.predict.model.resolve_model_dir`)."""
import argparse
import sys

from perceptions.errors import PerceptionsError

HELP = ("score images (files, folders, .txt/.csv lists, metadata tables) with a trained model -> CSV, Parquet "
        "or GeoJSON")


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGES",
                        help="image files, folders (searched recursively for .jpg/.jpeg/.png), a .txt/.csv "
                             "list of paths (one per line; relative to the list's folder) or a metadata table "
                             "(.csv/.tsv/.parquet/.geojson/.gpkg: one row per image, a path column and lat/lon "
                             "columns or a point geometry; its other columns are carried to the output). "
                             "Without a table, locations come from EXIF GPS, else Place Pulse-style names")
    parser.add_argument("--images", dest="images_dir", default=None, metavar="DIR",
                        help="folder that a table's relative paths are relative to (default: the table's folder)")
    parser.add_argument("--path-col", default=None, metavar="NAME",
                        help="a table's image path column (default: path/file/filename/image ...)")
    parser.add_argument("--lat-col", default=None, metavar="NAME",
                        help="a table's latitude column (default: lat/latitude/y; or its point geometry)")
    parser.add_argument("--lon-col", default=None, metavar="NAME",
                        help="a table's longitude column (default: lon/lng/long/longitude/x)")
    parser.add_argument("--panorama", default="auto", choices=("auto", "on", "off"),
                        help="cut equirectangular 360 degree panoramas into perspective views (90 degree field of "
                             "view, pitch 0, headings 0/90/180/270 from the panorama's centre column, clockwise, or "
                             "from the table's heading when it gives one) and score each view; auto: images that "
                             "are 2:1 within 1%%; on: every image (one not 2:1 is skipped); off: never")
    parser.add_argument("--panorama-output", default="both", choices=("views", "panoramas", "both"),
                        help="rows for panoramas: one per view (level=view), one per panorama (level=panorama: "
                             "mean and sd over its views), or both (default)")
    parser.add_argument("--save-views", default=None, metavar="DIR",
                        help="also write each panorama's views as JPEGs <panorama stem>_h<heading>.jpg in DIR")
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
    from perceptions.places.panoramas import PanoramaViews
    from perceptions.places.sources import PlaceSources
    from perceptions.predict.job import predict_to_file

    if args.panorama == "off" and args.save_views:
        raise PerceptionsError("--save-views needs panoramas to cut (it does nothing with --panorama off)")
    views = (PanoramaViews(args.panorama, args.panorama_output, args.save_views) if args.panorama != "off"
             else None)
    try:
        summary = predict_to_file(args.images, args.out, model=args.model, batch_size=args.batch_size,
                                  device=args.device, num_workers=args.workers, overwrite=args.overwrite,
                                  resume=args.resume, precision=args.precision, progress=args.progress,
                                  sources=PlaceSources(images_dir=args.images_dir, path_col=args.path_col,
                                                       lat_col=args.lat_col, lon_col=args.lon_col,
                                                       views=views))
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
    if s["format"] == "geojson" and "located_from" not in s:
        parts.append(f"{s['with_coordinates']} points with coordinates")
    if s.get("panoramas"):
        parts.append(f"{s['panoramas']} panoramas cut into {s['views']} scored views")
    if s["already_done"]:
        parts.append(f"{s['already_done']} from the earlier run")
    parts.append(f"{s['scored_now']} scored now in {s['seconds']:.1f} s ({rate:.0f} images/s"
                 + (f" over {s['ranks']} processes)" if s["ranks"] > 1 else ")"))
    if "located_from" in s:
        found = ", ".join(f"{n} from {'the table' if k == 'table' else 'EXIF' if k == 'exif' else 'names'}"
                          for k, n in s["located_from"].items() if n)
        parts.append(f"{s['rows'] - s['without_location']} with coordinates" + (f" ({found})" if found else ""))
        if s["without_location"]:
            bad = f", {s['out_of_range']} out of range" if s["out_of_range"] else ""
            parts.append(f"{s['without_location']} without a location{bad} (written with empty lat/lon)")
    if s["skipped"]:
        parts.append(f"{s['skipped']} unreadable skipped, listed in {s['skipped_file']}")
    return "; ".join(parts)
