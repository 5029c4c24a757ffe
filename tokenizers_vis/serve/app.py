"""The HTTP side of `vistok serve`: Starlette routes over `Page`, served by uvicorn.

Every endpoint answers JSON (or a file download); every failure is `{"error": "one line"}` with
status 400 (a request the page cannot serve) or 500 (a bug, logged here with its traceback but
never sent to the page), and the server goes on serving. Request bodies are read up to the
upload limit and refused past it, before anything is decoded. The page itself is three static
files, so nothing is fetched from outside the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tokenizers_vis.serve.images import PageError
from tokenizers_vis.serve.jobs import Job
from tokenizers_vis.serve.page import Page, ViewRequest

__all__ = ["create_app"]

log = logging.getLogger("vistok.serve")
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
}

DRAIN_BYTES = 2**30
Handler = Callable[[Request], Awaitable[Any]]


def _json(data: Any, status: int = 200) -> JSONResponse:
    if isinstance(data, Job):
        data = data.to_dict()
    return JSONResponse(data, status_code=status, headers=SECURITY_HEADERS)


def endpoint(fn: Handler) -> Handler:
    """Errors become one line of JSON; a bug is logged with its traceback, not sent."""

    async def wrapped(request: Request) -> Response:
        try:
            result = await fn(request)
            return result if isinstance(result, Response) else _json(result)
        except ValueError as err:  # PageError, VistokError and the library's ValueErrors
            return _json({"error": " ".join(str(err).split())}, 400)
        except Exception as err:
            log.exception("%s %s failed", request.method, request.url.path)
            return _json({"error": f"internal error ({type(err).__name__}); see the log"}, 500)

    return wrapped


def _int(request: Request, name: str, default: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None:
        if default is None:
            raise PageError(f"missing parameter {name!r}")
        return default
    try:
        return int(text)
    except ValueError:
        raise PageError(f"{name} must be an integer, got {text[:40]!r}") from None


def _float(request: Request, name: str, default: float) -> float:
    text = request.query_params.get(name)
    try:
        return default if text is None else float(text)
    except ValueError:
        raise PageError(f"{name} must be a number, got {text[:40]!r}") from None


def _view_request(request: Request) -> ViewRequest:
    q = request.query_params
    for name in ("image", "model"):
        if not q.get(name):
            raise PageError(f"missing parameter {name!r}")
    return ViewRequest(
        image=q["image"],
        model=q["model"],
        decoder=q.get("decoder", ""),
        k=_int(request, "k", 1),
        layout=q.get("layout", "tile"),
        scale=q.get("scale", "auto"),
        steps=_int(request, "steps", 0),
        seed=_int(request, "seed", 0),
    )


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused once it passes `limit` bytes (before any decoding). The rest
    is read and dropped, up to `DRAIN_BYTES`, so the client gets the answer instead of a broken
    connection (a browser shows that as a network error, not as the page's message)."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total <= limit:
            chunks.append(chunk)
        elif total > DRAIN_BYTES:
            break
    if total > limit:
        declared = request.headers.get("content-length", "")
        size = f"{int(declared):,} bytes" if declared.isdigit() else "upload"
        raise PageError(f"{size} is over the upload limit of {limit:,} bytes")
    return b"".join(chunks)


class Api:
    """The endpoints: parse a request, call `Page` off the event loop, return its answer."""

    def __init__(self, page: Page) -> None:
        self.page, self.limit = page, page.limits.max_upload_bytes

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    async def info(self, request: Request) -> Any:
        return await run_in_threadpool(self.page.info)

    async def upload(self, request: Request) -> Any:
        data = await _body(request, self.limit)
        name = unquote(request.headers.get("x-filename", "upload"))[:200]
        return await run_in_threadpool(self.page.upload, data, name)

    async def example(self, request: Request) -> Any:
        return await run_in_threadpool(self.page.example, request.query_params.get("id", ""))

    async def view(self, request: Request) -> Any:
        return await run_in_threadpool(self.page.view, _view_request(request))

    async def strip(self, request: Request) -> Any:
        return await run_in_threadpool(self.page.strip, _view_request(request))

    async def vtok(self, request: Request) -> Any:
        data, name = await run_in_threadpool(self.page.vtok, _view_request(request))
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        return Response(data, media_type="application/octet-stream", headers=headers)

    async def decode_vtok(self, request: Request) -> Any:
        data = await _body(request, self.limit)
        q = request.query_params
        args = (q.get("model", ""), q.get("decoder", ""), _int(request, "steps", 0))
        seed = _int(request, "seed", 0)
        return await run_in_threadpool(self.page.decode_vtok, data, *args, seed)

    async def generate(self, request: Request) -> Any:
        q = request.query_params
        args = (q.get("class", "all"), _float(request, "guidance", 3.0), _int(request, "k", 64))
        return self.page.generate(*args, _int(request, "n", 8), _int(request, "seed", 0))

    async def job(self, request: Request) -> Any:
        return self.page.jobs.get(request.path_params["job_id"])

    async def cancel(self, request: Request) -> Any:
        found = self.page.jobs.get(request.path_params["job_id"])
        found.cancel()
        return found


def routes(page: Page) -> list[Any]:
    api = Api(page)
    post = ["POST"]
    return [
        Route("/", endpoint(api.index)),
        Route("/api/info", endpoint(api.info)),
        Route("/api/image", endpoint(api.upload), methods=post),
        Route("/api/example", endpoint(api.example), methods=post),
        Route("/api/view", endpoint(api.view)),
        Route("/api/strip", endpoint(api.strip)),
        Route("/api/vtok", endpoint(api.vtok)),
        Route("/api/decode-vtok", endpoint(api.decode_vtok), methods=post),
        Route("/api/generate", endpoint(api.generate), methods=post),
        Route("/api/jobs/{job_id}", endpoint(api.job)),
        Route("/api/jobs/{job_id}/cancel", endpoint(api.cancel), methods=post),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(page: Page) -> Starlette:
    """The ASGI app of a page; closing the app (server shutdown) closes the page."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        page.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "error")
        return _json({"error": f"{request.url.path}: {detail}"}, status)

    return Starlette(
        routes=routes(page), lifespan=lifespan, exception_handlers={404: not_found, 405: not_found}
    )
