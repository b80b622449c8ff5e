"""The rating web app (FastAPI, served by uvicorn): blinded pairs, three questions, one vote per request.

Security: the page is a Jinja2 template with autoescape and its script writes data only through
``textContent``, under a Content-Security-Policy that allows no inline script; images are served by
random per-server ids (never by path), each checked to lie inside the run directories given; when the
server listens beyond loopback, every request needs the per-server token from the printed URL;
request bodies are capped and requests rate-limited per client and rater.

Needs the ``human`` extra (``pip install 'tsbench[human]'``).
"""
from __future__ import annotations

import ipaddress
import re
import secrets
import signal
import socket
import unicodedata
from pathlib import Path
from typing import Any, Callable, Literal

import jinja2
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIMiddleware

from tsbench.human.images import HumanEvalError, Study
from tsbench.human.protocol import QUESTION_IDS, QUESTIONS, SHOWN_CHOICES
from tsbench.human.schedule import Schedule
from tsbench.human.store import Pair, Presentation, VoteStore

HERE = Path(__file__).parent
STATIC = {"rate.js": "text/javascript; charset=utf-8", "rate.css": "text/css; charset=utf-8"}
MAX_BODY_BYTES = 16 * 1024
REQUEST_LIMIT, VOTE_LIMIT = "600/minute", "120/minute"
MAX_NAME = 40
TOKEN_HEADER = "x-tsbench-token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Choice = Literal[SHOWN_CHOICES]  # type: ignore[valid-type]
QuestionId = Literal[QUESTION_IDS]  # type: ignore[valid-type]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (then the app needs no token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_rater_name(name: str) -> str:
    """The name stripped; refused when empty, too long or holding control or format characters."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise HTTPException(422, f"a rater name is 1 to {MAX_NAME} printable characters")
    return name


class RaterIn(BaseModel):
    name: str = Field(max_length=200)


class VoteIn(BaseModel):
    presentation: int
    answers: dict[QuestionId, Choice]


class SkipIn(BaseModel):
    presentation: int


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) and bodies without a Content-Length (411), before
    the app reads them; h11 then holds the body to the declared length."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"")
            status = (411 if not length.isdigit() else 413 if int(length) > self.max_bytes else None)
            if status is not None or b"transfer-encoding" in headers:
                status = status or 411
                detail = "request body too large" if status == 413 else "a request body needs a Content-Length"
                await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Rating:
    """The study bound to its database: images by opaque id, pairs, presentations as page data."""

    def __init__(self, study: Study, store: VoteStore) -> None:
        self.study, self.store = study, store
        self.system_ids, self.pairs = store.register(study)
        self.pair_ids = [p.id for p in self.pairs]
        self.roots = [cell.run_dir.resolve() for cell in study.systems]
        self.image_ids: dict[tuple[int, tuple[str, int]], str] = {}
        self.paths: dict[str, Path] = {}
        for system, images in zip(self.system_ids, study.images):
            for key in study.keys:
                image_id = secrets.token_urlsafe(16)  # random per server: no path, no system in the URL
                self.image_ids[(system, key)] = image_id
                self.paths[image_id] = images[key].path

    def image(self, image_id: str) -> Path | None:
        path = self.paths.get(image_id)
        if path is None or not any(path.resolve().is_relative_to(root) for root in self.roots):
            return None
        return path

    def page_data(self, shown: Presentation, rater_id: int) -> dict[str, Any]:
        pair: Pair = shown.pair
        right = pair.system_b if shown.left_system == pair.system_a else pair.system_a
        key = (pair.unit, pair.seed)
        return {"state": "pair", "presentation": shown.id, "prompt": pair.prompt,
                "left": f"/img/{self.image_ids[(shown.left_system, key)]}",
                "right": f"/img/{self.image_ids[(right, key)]}", **self.progress(rater_id)}

    def progress(self, rater_id: int) -> dict[str, int]:
        return {"done": self.store.done(rater_id, self.pair_ids), "total": len(self.pairs)}


def _client_key(request: Request) -> str:
    host = request.client.host if request.client else "?"
    return f"{host}|{request.query_params.get('rater', '')}"


def create_app(study: Study, store: VoteStore, token: str | None = None, request_limit: str = REQUEST_LIMIT,
               vote_limit: str = VOTE_LIMIT, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The app for ``study``; with ``token`` set, every request must carry it (``?token=`` or the
    ``X-Tsbench-Token`` header)."""
    rating = Rating(study, store)
    schedule = Schedule(rating.pairs)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                   undefined=jinja2.StrictUndefined)
    limiter = Limiter(key_func=_client_key, default_limits=[request_limit])

    def guard(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(403, "this server needs its token: open the URL it printed when it started")

    app = FastAPI(title="tsbench human evaluation", docs_url=None, redoc_url=None, openapi_url=None)
    guarded = [Depends(guard)]  # every route but the page's own script and style
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)
    app.add_middleware(SlowAPIMiddleware)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(HumanEvalError)
    async def refused(request: Request, err: HumanEvalError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=409)

    @app.exception_handler(LookupError)
    async def not_found(request: Request, err: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(err.args[0] if err.args else err)}, status_code=404)

    def who(rater: str = Query(max_length=200)) -> int:
        """The rater of a request (``?rater=``, also the rate limiter's key)."""
        return store.rater(check_rater_name(rater))

    def mine(rater: int, presentation: int) -> Presentation:
        shown = store.presentation(rater, presentation)
        if shown is None:
            raise HTTPException(404, f"presentation {presentation} is not this rater's")
        return shown

    @app.get("/", response_class=HTMLResponse, dependencies=guarded)
    def index() -> HTMLResponse:
        html = templates.get_template("rate.html").render(
            questions=QUESTIONS, total=len(rating.pairs), systems=len(study.systems), kind=study.kind,
            prompts=len({unit for unit, _ in study.keys}))
        return HTMLResponse(html)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name])

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/img/{image_id}", dependencies=guarded)
    def image(image_id: str) -> Response:
        path = rating.image(image_id) if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", image_id) else None
        if path is None:
            raise HTTPException(404, "no such image")
        # bytes only: no file name, date or ETag that could tell the systems apart
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/rater", dependencies=guarded)
    def rater(body: RaterIn) -> dict[str, Any]:
        name = check_rater_name(body.name)
        return {"name": name, **rating.progress(store.rater(name))}

    @app.get("/api/next", dependencies=guarded)
    def next_pair(rater: int = Depends(who)) -> dict[str, Any]:
        shown = store.assign(rater, schedule.picker())
        if shown is None:
            return {"state": "finished", **rating.progress(rater)}
        return rating.page_data(shown, rater)

    @app.post("/api/vote", dependencies=guarded)
    @limiter.limit(vote_limit)
    def vote(request: Request, body: VoteIn, rater: int = Depends(who)) -> dict[str, Any]:
        mine(rater, body.presentation)
        result = store.vote(rater, body.presentation, dict(body.answers))
        return {"saved": True, "revote": result.revote, "changed": list(result.changed), **rating.progress(rater)}

    @app.post("/api/skip", dependencies=guarded)
    def skip(body: SkipIn, rater: int = Depends(who)) -> dict[str, Any]:
        mine(rater, body.presentation)
        store.skip(rater, body.presentation)
        return {"skipped": True, **rating.progress(rater)}

    @app.get("/api/previous", dependencies=guarded)
    def previous(before: int | None = None, rater: int = Depends(who)) -> dict[str, Any]:
        found = store.answered(rater, before)
        if found is None:
            return {"state": "none"}
        shown, answers = found
        return {**rating.page_data(shown, rater), "state": "previous", "answers": answers}

    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), so the printed URL has the real port before serving."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise HumanEvalError(f"--host {host}: cannot resolve it ({err})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise HumanEvalError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port") from None
    sock.listen(128)
    return sock


def server_token(host: str, require_token: bool = False) -> str | None:
    """A fresh random token when the server listens beyond loopback (or when asked), else None."""
    return secrets.token_urlsafe(24) if require_token or not is_loopback(host) else None


def serve(study: Study, db: Path, host: str, port: int, require_token: bool = False,
          announce: Callable[[str], None] = print) -> None:
    """Run the app until interrupted; ``announce`` gets the URL (with the token when one is needed)."""
    import uvicorn

    store = VoteStore(db)
    token = server_token(host, require_token)
    app = create_app(study, store, token=token)
    sock = listen(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
    announce(url)
    config = uvicorn.Config(app, log_level="warning", limit_concurrency=64, timeout_keep_alive=5, server_header=False,
                            h11_max_incomplete_event_size=16 * 1024)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # uvicorn re-raises the signal after shutting down
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, after uvicorn's graceful shutdown
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
