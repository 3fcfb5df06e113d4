"""`perceptions serve --images DIR`: a local web app to score photos, see the map and collect votes.

Pages Score, Map and Vote, and a JSON API under /api (perceptions/serve/app.py). Binds to 127.0.0.1 by default;
another address without --token gets a generated token, printed once with the pages' address.
"""
import sys

HELP = ("a local web app: score photos (with Grad-CAM heat maps), see a predictions map, and collect Place "
        "Pulse-style votes into a votes file that `perceptions score` reads")


def add_arguments(parser):
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder of images named {lat}_{lon}_{id}_{City}.jpg (as `perceptions synth` and Place "
                             "Pulse 2.0 name them): the vote page's pairs; only these files are ever served")
    parser.add_argument("--model", default=None, metavar="PKG",
                        help="model package folder; None: $PERCEPTIONS_MODEL when set, else the model shipped with "
                             "perceptions (the repository's model/ in a clone)")
    parser.add_argument("--votes", default=None, metavar="FILE",
                        help="votes file to append to (Place Pulse site-export TSV, read by `perceptions score "
                             "--votes`); default: votes.tsv next to the images folder (<images>/../votes.tsv)")
    parser.add_argument("--predictions", default=None, metavar="FILE",
                        help="output of `perceptions predict` or `perceptions aggregate` to show on the Map page "
                             "(needs the [geo] extra)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; any other than a loopback address needs a token")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--token", default=None, metavar="SECRET",
                        help="access token every request must carry (?token= or the X-Token header); generated "
                             "and printed when --host is not a loopback address and none is given")
    parser.add_argument("--pairs", default="active", choices=("active", "random"),
                        help="how the vote page picks pairs: active (informative pairs, from the TrueSkill state "
                             "of the votes so far) or random (uniform, as Place Pulse did)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                        help="largest photo the Score page accepts")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def run(args) -> int:
    import gc
    import socket

    from perceptions.errors import PerceptionsError
    from perceptions.extras import require

    for module in ("fastapi", "uvicorn", "jinja2", "python_multipart"):
        require(module, "serve")
    import uvicorn

    from perceptions.serve.access import access_token
    from perceptions.serve.app import ServeSettings, create_app

    if not 0 <= args.port <= 65535:
        raise PerceptionsError(f"--port {args.port}: use 0..65535")
    token, generated = access_token(args.host, args.token)
    # The socket first: a port in use is one line before the slow start-up, and uvicorn gets this very socket.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise PerceptionsError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} (choose another "
                               "--port or --host)") from None
    try:
        settings = ServeSettings(images=args.images, model=args.model, votes=args.votes, predictions=args.predictions,
                                 host=args.host, port=sock.getsockname()[1], token=token, pairs=args.pairs,
                                 max_upload_mb=args.max_upload_mb, device=args.device)
        app = create_app(settings)
        # The ~half a million objects of start-up (torch, pandas, the app) live as long as the process: out of the
        # collector's sight, they cost no time in the collections that requests trigger, nor seconds at exit.
        gc.freeze()
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        print(address_line(args.host, settings.port, token, generated), flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the server has stopped cleanly
            pass
    finally:
        sock.close()
    state = app.state.serve
    batcher = state.scorer.batcher
    print(f"perceptions serve: stopped; scored {batcher.items} photo(s) in {batcher.batches} model call(s), "
          f"{state.votes.written} vote(s) written to {state.votes.path}", file=sys.stderr)
    return 0


def address_line(host: str, port: int, token: str | None, generated: bool) -> str:
    from urllib.parse import quote

    shown = f"[{host}]" if ":" in host else host
    query = f"?token={quote(token, safe='')}" if token else ""
    line = f"perceptions serve: http://{shown}:{port}/{query} (Score, Map, Vote)"
    if token:
        line += (f"; vote page: http://{shown}:{port}/vote{query}"
                 + ("; the token was generated for this run (give --token to choose one)" if generated else ""))
    return line
