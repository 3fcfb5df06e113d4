"""`perceptions synth`: write a synthetic city in Place Pulse 2.0 formats (images, votes, scores, truth)."""
import argparse

from perceptions.data.crowds import CROWD_NAMES
from perceptions.data.crowds import help_text as crowd_help

HELP = ("draw a synthetic city in Place Pulse 2.0 formats: street scenes, crowd votes, TrueSkill scores and "
        "the true perception of every scene")


def add_arguments(parser):
    parser.add_argument("--out", default="input/synthetic", metavar="DIR",
                        help="folder to write images/, votes.tsv, qscores.tsv and truth.csv into")
    parser.add_argument("--images", type=int, default=3000, metavar="N", help="number of street scenes")
    parser.add_argument("--cities", type=int, default=4, metavar="K",
                        help="number of cities, each with its own mix of neighbourhoods")
    parser.add_argument("--votes-per-image", type=float, default=6, metavar="V",
                        help="times each image is compared, per study; a fraction such as 3.5 (about Place Pulse "
                        "2.0's density) compares each image 3 or 4 times")
    parser.add_argument("--seed", type=int, default=0, help="same seed and arguments give identical files")
    parser.add_argument("--crowd-noise", type=float, default=0.6, metavar="SD",
                        help="sd of a voter's error on the true difference (truth has sd ~1)")
    parser.add_argument("--crowd", default="default", choices=CROWD_NAMES,
                        help="how the voters weigh a scene. " + crowd_help() + "; the crowd sets truth.csv")
    parser.add_argument("--subgroup", default=None, choices=CROWD_NAMES, metavar="CROWD",
                        help="a voter subgroup that judges as this other crowd (a biased share of the crowd); "
                        "votes.tsv's voter_uniqueid and voters.csv say who is in it, city.json records it")
    parser.add_argument("--subgroup-share", type=float, default=0.2, metavar="F",
                        help="share of the voters (chosen by voter id) in --subgroup")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier synthetic city in --out (other files there are kept)")
    parser.add_argument("--preview", metavar="FILE.png",
                        help="also write a contact sheet of a few scenes with their true perceptions")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: on a terminal; in a log file one plain line every 30 s)")


def run(args) -> int:
    from perceptions.data.synthetic import generate_city
    from perceptions.data.synthetic_preview import write_contact_sheet

    summary = generate_city(args.out, n_images=args.images, n_cities=args.cities,
                            votes_per_image=args.votes_per_image, seed=args.seed, overwrite=args.overwrite,
                            crowd_noise=args.crowd_noise, progress=args.progress, crowd=args.crowd,
                            subgroup=args.subgroup, subgroup_share=args.subgroup_share if args.subgroup else 0.0)
    print(f"wrote {summary['images']} scenes of {', '.join(summary['cities'])} and {summary['votes']} votes "
          f"({summary['tie_share']:.1%} ties) to {summary['out']} in {summary['seconds']:.0f} s")
    if args.crowd != "default" or args.subgroup:
        group = f", and a subgroup of {args.subgroup_share:.0%} of the voters as the {args.subgroup} crowd" \
            if args.subgroup else ""
        print(f"crowd: {args.crowd}{group} (city.json{', voters.csv' if args.subgroup else ''})")
    ceiling = ", ".join(f"{k} {v:.2f}" for k, v in summary["spearman_trueskill_truth"].items())
    print(f"Spearman of the TrueSkill labels with the truth (the label-noise ceiling): {ceiling}")
    if args.preview:
        print(f"contact sheet: {write_contact_sheet(args.out, args.preview, seed=args.seed)}")
    return 0
