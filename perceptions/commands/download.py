"""`perceptions download placepulse`: fetch Place Pulse 2.0 (resumable) and unpack it under --dest."""
import argparse

HELP = "download Place Pulse 2.0 (about 3 GB, resumable) and unpack it into input/placepulse/"


def add_arguments(parser):
    from perceptions.data.download import DEFAULT_URL

    parser.add_argument("dataset", choices=("placepulse",), help="what to fetch")
    parser.add_argument("--dest", default="input", metavar="DIR",
                        help="folder that receives the archive and placepulse/{images,qscores.tsv,votes}")
    parser.add_argument("--url", default=DEFAULT_URL, help="address of the archive (mirrors move)")
    parser.add_argument("--archive", metavar="FILE.zip",
                        help="unpack this already downloaded archive instead of downloading")
    parser.add_argument("--overwrite", action="store_true", help="unpack over a non-empty DIR/placepulse/")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: on a terminal; in a log file one plain line every 30 s)")


def run(args) -> int:
    from perceptions.data.download import download_placepulse

    report = download_placepulse(args.dest, url=args.url, archive=args.archive, overwrite=args.overwrite,
                                 progress=args.progress)
    fetched = report["archive"]
    resumed = f", resumed at {fetched['resumed_from']:,} bytes" if fetched["resumed_from"] else ""
    print(f"archive {fetched['path']}: {fetched['bytes']:,} bytes{resumed}, sha256 {fetched['sha256']}")
    print(f"unpacked {report['images']:,} images into {report['folder']}/images")
    for role in ("qscores", "votes"):
        print(f"{role}: {report[role] or 'not in the archive'}")
    return 0
