"""`perceptions aggregate PREDICTIONS --h3 RES | --areas FILE --key COL | --streets FILE`: scores summarised per
H3 hexagon, area or street segment, with coverage (`n`, `sufficient`), written as GeoPackage, GeoParquet,
GeoJSON or CSV (by the extension of --out), in WGS 84."""

HELP = "summarise predictions per H3 hexagon, area (polygons) or street segment -> .gpkg/.parquet/.geojson/.csv"


def add_arguments(parser):
    parser.add_argument("predictions", help="output of `perceptions predict` (.csv, .parquet or .geojson)")
    unit = parser.add_mutually_exclusive_group(required=True)
    unit.add_argument("--h3", type=int, metavar="RES", help="H3 hexagons of this resolution (0-15; 9: ~0.1 km2)")
    unit.add_argument("--areas", metavar="FILE", help="polygons (any file GeoPandas reads, with a CRS); needs --key")
    unit.add_argument("--streets", metavar="FILE",
                      help="street lines (any file GeoPandas reads, with a CRS): each image to its nearest segment")
    parser.add_argument("--key", metavar="COLUMN",
                        help="the areas' (or streets') identifying column, carried to the output")
    parser.add_argument("--max-distance", type=float, default=25.0, metavar="M",
                        help="with --streets: images farther than this many metres from every segment are left out")
    parser.add_argument("--min-n", type=int, default=5,
                        help="cells with fewer images keep their row with sufficient=false and no summary")
    parser.add_argument("--out", default="aggregate.gpkg", help="output file: .gpkg, .parquet, .geojson or .csv")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args) -> int:
    from perceptions.errors import PerceptionsError
    from perceptions.places.aggregate import by_areas, by_h3, by_streets
    from perceptions.places.geofiles import check_layer_output, write_layer
    from perceptions.predict.writers import read_predictions

    out = check_layer_output(args.out, args.overwrite)
    if args.min_n < 1:
        raise PerceptionsError(f"--min-n must be at least 1, got {args.min_n}")
    if args.areas and not args.key:
        raise PerceptionsError("--areas needs --key COLUMN (the column that names each area)")
    predictions = read_predictions(args.predictions)
    if args.h3 is not None:
        result, left_out = by_h3(predictions, args.h3, args.min_n)
        unit, why = f"H3 cells (resolution {args.h3})", "without coordinates"
    elif args.areas:
        result, left_out = by_areas(predictions, args.areas, args.key, args.min_n)
        unit, why = "areas", "without coordinates or outside every area"
    else:
        result, left_out = by_streets(predictions, args.streets, args.key, args.max_distance, args.min_n)
        unit, why = "street segments", f"without coordinates or farther than {args.max_distance:g} m from a street"
    write_layer(result, out)
    counted = int(result["n"].sum())
    line = (f"wrote {len(result)} {unit} to {out}: {counted} images counted, "
            f"{int(result['sufficient'].sum())} with at least {args.min_n} (sufficient)")
    if left_out:
        line += f"; {left_out} images {why} left out"
    print(line)
    return 0
