"""`perceptions explain IMAGE --study safe --out heat.png`: a Grad-CAM heat map of what drove a score."""
from pathlib import Path

HELP = "Grad-CAM heat map over an image for one study (or a grid for --study all)"


def add_arguments(parser):
    parser.add_argument("image", help="an image file (.jpg, .png)")
    parser.add_argument("--model", default=None, metavar="PKG",
                        help="model package folder; None: $PERCEPTIONS_MODEL when set, else the model shipped with "
                             "perceptions (the repository's model/ in a clone)")
    parser.add_argument("--study", default="all",
                        help="study name or alias, a comma list, or 'all' for a grid of every study")
    parser.add_argument("--out", default="heat.png", help="picture to write (.png, .jpg, .pdf or .svg)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args) -> int:
    from perceptions.predict.explain import explain_to_file

    explanation = explain_to_file(args.image, args.out, model=args.model, studies=args.study, device=args.device,
                                  overwrite=args.overwrite)
    scores = ", ".join(f"{s} {v:.2f}" for s, v in explanation.scores.items())
    print(f"wrote {Path(args.out)} (Grad-CAM; scores: {scores})")
    return 0
