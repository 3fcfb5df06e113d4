"""`create_app(settings)`: the FastAPI app of `perceptions serve`, all its state in `app.state.serve`.

Start-up does the slow and the risky work once: load the model, index `--images`, read the votes file, replay
its votes into the pair choosers, build the map. Routes are thin: they check a request and call those objects.
Every error is JSON, `{"error": "<one line>"}`, with a 4xx status for a bad request (never a traceback page).

    GET  /api/health                  {"status": "ok"}
    GET  /api/studies                 [{"key", "name", "question"}, ...]
    POST /api/score[?explain=STUDY]   multipart field `image` -> {"studies": {study: {"score", "decile"}},
                                      "heatmap": "data:image/png;base64,..." with explain}
    GET  /api/pair?study=STUDY        {"study", "left", "right", "left_url", "right_url"}
    POST /api/vote                    {"study", "left", "right", "choice", "voter"} -> {"ok": true}
    GET  /api/votes/count[?study=]    {"count": n}
    GET  /images/<id>                 an image the index holds
    GET  / (-> /score), /score, /vote, /map; /static/...
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from perceptions.errors import PerceptionsError
from perceptions.serve.uploads import UploadError
from perceptions.serve.votes import VoteError
from perceptions.studies import STUDY_NAMES

log = logging.getLogger(__name__)

PAIR_METHODS = ("active", "random")


@dataclass
class ServeSettings:
    """What `perceptions serve` is started with (its command-line options)."""

    images: Path
    model: str | Path | None = None      # None: $PERCEPTIONS_MODEL, else the shipped model
    votes: Path | None = None            # None: <images>/../votes.tsv
    predictions: Path | None = None      # the map's file; None: the map page says how to get one
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    pairs: str = "active"
    max_upload_mb: float = 20.0
    device: str = "auto"
    max_batch: int = 32                  # the micro-batcher: most uploads per model call,
    max_wait_ms: float = 10.0            # and longest wait for more after the first
    seed: int | None = None              # pair choice; None: different pairs every run

    @property
    def votes_path(self) -> Path:
        return Path(self.votes) if self.votes else Path(self.images).absolute().parent / "votes.tsv"


class ServeState:
    """Everything a request may touch, made once by `create_app`."""

    def __init__(self, settings: ServeSettings):
        from perceptions.predict.model import load_model
        from perceptions.serve.choosers import StudyPairs
        from perceptions.serve.images import ImageIndex
        from perceptions.serve.pages import make_templates, map_page
        from perceptions.serve.scoring import Scorer
        from perceptions.serve.votes import VoteLog

        if settings.pairs not in PAIR_METHODS:
            raise PerceptionsError(f"--pairs {settings.pairs!r}: use active or random")
        if not settings.max_upload_mb > 0:
            raise PerceptionsError(f"--max-upload-mb must be more than 0, got {settings.max_upload_mb}")
        self.settings = settings
        self.token = settings.token or None
        self.max_upload_bytes = int(settings.max_upload_mb * 2**20)
        self.index = ImageIndex(settings.images)
        self.votes = VoteLog(settings.votes_path)
        self.pairs = StudyPairs(self.index.ids, settings.pairs, self.votes.existing, seed=settings.seed)
        self.votes.existing = None  # replayed: no need to keep the table
        self.map_html = map_page(settings.predictions) if settings.predictions else None
        self.templates = make_templates()
        self.model = load_model(settings.model, device=settings.device)
        self.scorer = Scorer(self.model, max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000)
        self._decode_limiter = None

    def decode_limiter(self):
        """At most this many uploads decode at once (each may take hundreds of MB while decoding); made on first
        use, inside the event loop."""
        if self._decode_limiter is None:
            import os

            import anyio

            self._decode_limiter = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        return self._decode_limiter

    def image_url(self, image_id: str) -> str:
        return f"/images/{quote(image_id, safe='')}" + (f"?token={quote(self.token, safe='')}" if self.token else "")

    def close(self) -> None:
        self.scorer.close()


# ------------------------------------------------------------------------------------------------ bodies

class Health(BaseModel):
    status: str = "ok"


class StudyInfo(BaseModel):
    key: str
    name: str
    question: str


class StudyScore(BaseModel):
    score: float
    decile: int


class ScoreOut(BaseModel):
    studies: dict[str, StudyScore]
    heatmap: str | None = None


class PairOut(BaseModel):
    study: str
    left: str
    right: str
    left_url: str
    right_url: str


class VoteIn(BaseModel):
    study: str = Field(max_length=100)
    left: str = Field(max_length=200)
    right: str = Field(max_length=200)
    choice: str = Field(max_length=20)
    voter: str | None = Field(default=None, max_length=1000)


class Ok(BaseModel):
    ok: bool = True


class Count(BaseModel):
    count: int


# ------------------------------------------------------------------------------------------------ routes

api = APIRouter()


def _serve(request: Request) -> ServeState:
    return request.app.state.serve


def _study_name(value: str | None, default: bool = True) -> str:
    if value is None and default:
        return STUDY_NAMES[0]
    if value not in STUDY_NAMES:
        raise HTTPException(400, f"unknown study {str(value)[:40]!r}; expected one of {', '.join(STUDY_NAMES)}")
    return value


@api.get("/api/health", response_model=Health)
def health():
    return Health()


@api.get("/api/studies", response_model=list[StudyInfo])
def studies():
    from perceptions.serve.pages import study_list

    return study_list()


@api.post("/api/score", response_model=ScoreOut, response_model_exclude_none=True)
async def score(request: Request, explain: str | None = None):
    import anyio

    from perceptions.serve.uploads import as_file, read_image_field, sniff

    serve = _serve(request)
    scorer = serve.scorer
    data = await read_image_field(request, serve.max_upload_bytes)
    if explain is not None and explain not in scorer.studies:
        raise HTTPException(400, f"no study {explain[:40]!r} to explain; the model predicts "
                                 f"{', '.join(scorer.studies)}")

    def prepare():
        sniff(data, scorer.max_pixels)
        with as_file(data) as path:
            return scorer.prepare(path)

    def heatmap():
        from perceptions.serve.scoring import data_url

        with as_file(data) as path:
            return data_url(scorer.heatmap_png(path, explain))

    crop = await anyio.to_thread.run_sync(prepare, limiter=serve.decode_limiter())
    scores = asyncio.wrap_future(scorer.score(crop))
    # Grad-CAM runs one at a time (Scorer.heatmap_png) while the batch with this photo is scored.
    picture = await anyio.to_thread.run_sync(heatmap) if explain else None
    return ScoreOut(studies=await scores, heatmap=picture)


@api.get("/api/pair", response_model=PairOut)
def pair(request: Request, study: str | None = None):
    serve = _serve(request)
    name = _study_name(study)
    left, right = serve.pairs.next_pair(name)
    return PairOut(study=name, left=left, right=right, left_url=serve.image_url(left),
                   right_url=serve.image_url(right))


@api.post("/api/vote", response_model=Ok)
def vote(request: Request, body: VoteIn):
    from perceptions.serve.votes import CHOICES, clean_voter

    serve = _serve(request)
    name = _study_name(body.study, default=False)
    for side in (body.left, body.right):
        if side not in serve.index:
            raise VoteError(f"unknown image id {side[:40]!r} (use the ids /api/pair hands out)")
    if body.left == body.right:
        raise VoteError("left and right are the same image")
    if body.choice not in CHOICES:
        raise VoteError(f"choice {body.choice[:20]!r} is not left, right or equal")
    voter = clean_voter(body.voter)
    serve.votes.append(name, body.left, body.right, body.choice, voter)
    serve.pairs.add_vote(name, body.left, body.right, body.choice)
    return Ok()


@api.get("/api/votes/count", response_model=Count)
def vote_count(request: Request, study: str | None = None):
    serve = _serve(request)
    return Count(count=serve.votes.count(_study_name(study) if study is not None else None))


@api.get("/images/{image_id}", include_in_schema=False)
def image(request: Request, image_id: str):
    import os

    serve = _serve(request)
    path = serve.index.path(image_id)
    if path is None or not os.path.isfile(path):
        raise HTTPException(404, "no such image")
    return FileResponse(path, media_type=serve.index.media_type(path),
                        headers={"Cache-Control": "private, max-age=3600"})


# ------------------------------------------------------------------------------------------------ errors

def one_line(text) -> str:
    line = " ".join(str(text).split())
    return line[:500] if line else "error"


def _error(status: int, message, headers=None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: HTTPException):
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"not found: {request.url.path[:200]}"
    return _error(exc.status_code, detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    if not errors:
        return _error(422, "invalid request")
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    return _error(422, f"{where}: {first.get('msg', 'invalid')}")


async def _upload_error(request: Request, exc: UploadError):
    return _error(exc.status, exc.message)


async def _refused(request: Request, exc: Exception):
    return _error(400, exc)


async def _internal(request: Request, exc: Exception):
    return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UploadError, _upload_error)
    app.add_exception_handler(VoteError, _refused)
    app.add_exception_handler(PerceptionsError, _refused)
    app.add_exception_handler(Exception, _internal)


# ------------------------------------------------------------------------------------------------ the app

def create_app(settings: ServeSettings) -> FastAPI:
    """The app, ready to run (`uvicorn.run(create_app(settings))`). Raises PerceptionsError, one line, for a
    bad model, images folder, votes file or predictions file."""
    from fastapi.staticfiles import StaticFiles

    from perceptions.serve.access import Guard
    from perceptions.serve.pages import STATIC, router as pages

    state = ServeState(settings)

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="perceptions serve", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=lifespan)
    app.state.serve = state
    app.include_router(api)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    install_error_handlers(app)
    app.add_middleware(Guard, token=state.token)
    return app
