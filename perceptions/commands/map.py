"""`perceptions map PREDICTIONS --study safe --out map.png`: a static map of predicted scores.

Interactive HTML maps need web tiles (folium/leaflet fetch them from the internet), so only static maps are
made here: they work offline and print.
"""

HELP = "map predicted scores of images with coordinates (points or --hex means), one panel per city"


def add_arguments(parser):
    parser.add_argument("predictions", help="output of `perceptions predict` (.csv, .parquet or .geojson)")
    parser.add_argument("--study", default="safe", help="which study's score to colour by (name or alias)")
    parser.add_argument("--out", default="map.png", help="picture to write (.png, .pdf or .svg)")
    parser.add_argument("--hex", action="store_true", help="hexagon means instead of points")
    parser.add_argument("--gridsize", type=int, default=30, help="hexagons across a panel (with --hex)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args) -> int:
    from perceptions.predict.maps import map_to_file

    summary = map_to_file(args.predictions, args.study, args.out, hexbin=args.hex, gridsize=args.gridsize,
                          overwrite=args.overwrite)
    extra = f", {summary['without_coordinates']} rows without coordinates left out" \
        if summary["without_coordinates"] else ""
    print(f"wrote {summary['out']}: {summary['points']} images in {summary['panels']} panel(s){extra}")
    return 0
