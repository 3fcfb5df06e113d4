"""`perceptions map PREDICTIONS --study safe --out map.png`: a static map of predicted scores;
`perceptions map PREDICTIONS_OR_AGGREGATE --html map.html`: an interactive map in one self-contained HTML file.

The static maps work offline and print. The HTML map inlines Leaflet and the data, so it opens offline too; it
shows an OpenStreetMap background only when the browser is online.
"""

HELP = ("map predicted scores: a static picture (points or --hex means, one panel per city) or, with --html, an "
        "interactive map of predictions or of an aggregate")


def add_arguments(parser):
    parser.add_argument("predictions", help="output of `perceptions predict` (.csv, .parquet or .geojson); with "
                                            "--html also the output of `perceptions aggregate` (.gpkg ...)")
    parser.add_argument("--study", default="safe", help="which study's score to colour by (name or alias); the HTML "
                                                        "map starts with it and can switch")
    parser.add_argument("--out", default=None, help="picture to write (.png, .pdf or .svg); default map.png "
                                                    "unless --html is given")
    parser.add_argument("--hex", action="store_true", help="hexagon means instead of points")
    parser.add_argument("--gridsize", type=int, default=30, help="hexagons across a panel (with --hex)")
    parser.add_argument("--html", metavar="FILE", default=None,
                        help="write an interactive map (Leaflet, self-contained, opens offline) to this .html file")
    parser.add_argument("--thumbnails", action="store_true",
                        help="with --html: embed a small picture of each image in its popup")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out / --html")


def run(args) -> int:
    if args.html:
        from perceptions.places.html_map import write_html_map

        summary = write_html_map(args.predictions, args.html, study=args.study, thumbnails=args.thumbnails,
                                 overwrite=args.overwrite)
        what = "points" if summary["kind"] == "points" else "cells"
        print(f"wrote {summary['out']}: {summary['features']} {what}, studies {', '.join(summary['studies'])} "
              "(self-contained: opens offline)")
        if args.out is None:
            return 0
    from perceptions.predict.maps import map_to_file

    summary = map_to_file(args.predictions, args.study, args.out or "map.png", hexbin=args.hex,
                          gridsize=args.gridsize, overwrite=args.overwrite)
    extra = f", {summary['without_coordinates']} rows without coordinates left out" \
        if summary["without_coordinates"] else ""
    print(f"wrote {summary['out']}: {summary['points']} images in {summary['panels']} panel(s){extra}")
    return 0
