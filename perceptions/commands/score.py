"""`perceptions score`: crowd votes (any PP2 format) -> per-image scores in PP2's qscores.tsv layout."""
ORDER_WORDS = {"timestamp": "votes in time order", "file": "votes in file order (no timestamps)"}
HELP = "turn pairwise votes into per-image scores (TrueSkill, Q-score or Bradley-Terry), written as qscores.tsv"


def add_arguments(parser):
    parser.add_argument("--votes", required=True, metavar="FILE",
                        help="votes: PP2 site export (CSV/TSV), Kaggle votes.csv or the extended export")
    parser.add_argument("--method", default="trueskill", choices=("trueskill", "qscore", "bradley-terry"),
                        help="trueskill: Place Pulse's sequential TrueSkill (mu 25, sigma 25/3, draw 0.13), "
                             "votes in time order when the file has timestamps, else in file order; "
                             "qscore: Salesses et al. 2013; bradley-terry: maximum likelihood, ties as half wins")
    parser.add_argument("--out", default="qscores.tsv", metavar="FILE", help="qscores.tsv to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args) -> int:
    from perceptions.data.scoring import score_file

    summary = score_file(args.votes, args.out, method=args.method, overwrite=args.overwrite)
    print(f"scored {summary['votes']} votes: {summary['images']} images, {len(summary['studies'])} "
          f"{'study' if len(summary['studies']) == 1 else 'studies'} ({', '.join(summary['studies'])}) "
          f"with {summary['method']}, {ORDER_WORDS[summary['order']]} -> {summary['out']}")
    return 0
