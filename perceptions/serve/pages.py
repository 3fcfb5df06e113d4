"""The three pages: Score and Vote from Jinja2 templates (autoescaped), Map from `perceptions.places.html_map`.

The templates and their scripts live in this package (`templates/`, `static/`): nothing comes from a CDN, so
the pages work offline. Each page gets the same context: `studies` (key, name, question), `study` (the first),
`token` ("" without one; the page's scripts add it to their requests), `pairs` and `title`.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

router = APIRouter()


def make_templates():
    import jinja2
    from starlette.templating import Jinja2Templates

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)
    return Jinja2Templates(env=env)


def study_list() -> list[dict]:
    from perceptions.studies import STUDIES

    return [{"key": s.name, "name": s.name.capitalize(), "question": s.question} for s in STUDIES]


def map_page(predictions) -> str:
    """The HTML map of a predictions or aggregate file (what `perceptions map --html` writes), built once."""
    from perceptions.places.geofiles import read_layer
    from perceptions.places.html_map import map_data, render_html

    predictions = Path(predictions)
    data = map_data(read_layer(predictions), None, thumbnails=False, base=predictions.parent)
    return render_html(data, f"perceptions: {predictions.name}")


def _render(request: Request, name: str, title: str):
    serve = request.app.state.serve
    context = {"studies": study_list(), "study": study_list()[0]["key"], "token": serve.token or "",
               "pairs": serve.pairs.method, "title": title}
    return serve.templates.TemplateResponse(request, name, context)


@router.get("/", include_in_schema=False)
def root(request: Request):
    query = request.url.query
    return RedirectResponse("/score" + (f"?{query}" if query else ""), status_code=307)


@router.get("/score", response_class=HTMLResponse, include_in_schema=False)
def score_page(request: Request):
    return _render(request, "score.html", "Score photos - perceptions")


@router.get("/vote", response_class=HTMLResponse, include_in_schema=False)
def vote_page(request: Request):
    return _render(request, "vote.html", "Which place? - perceptions")


@router.get("/map", response_class=HTMLResponse, include_in_schema=False)
def map_view(request: Request):
    serve = request.app.state.serve
    if serve.map_html is not None:
        return HTMLResponse(with_nav(serve.map_html, serve.token or ""))
    return _render(request, "map_missing.html", "Map - perceptions")


def with_nav(map_html: str, token: str) -> str:
    """The map file as `map --html` writes it, with a small bar of links back to the other pages: the file is
    self-contained for sharing, the served copy is one page of the app."""
    from html import escape
    from urllib.parse import quote

    q = escape(f"?token={quote(token, safe='')}") if token else ""
    nav = ('<nav aria-label="pages" style="position:fixed;z-index:2000;bottom:12px;left:12px;padding:4px 10px;'
           'border-radius:4px;background:#1f2933;font:14px system-ui,sans-serif">'
           f'<a style="color:#fff" href="/score{q}">Score</a> <span style="color:#9aa5b1">&middot; Map &middot;</span> '
           f'<a style="color:#fff" href="/vote{q}">Vote</a></nav>')
    return map_html.replace("<body>", "<body>" + nav, 1)
