"""`vistok serve`: a local page to see what k tokens keep (layout and callbacks only).

    from tokenizers_vis.serve import Page, Server
    page = Page(models=["runs/my_tok/export"])          # + every shipped tokenizer
    with Server(page, port=0) as server:                # a thread; port 0 picks a free one
        print(server.url)

Over the public APIs: `codec` (encode once, decode every prefix, .vtok files and their errors),
`metrics` (PSNR, SSIM, bytes, JPEG / WebP at equal bytes) and the `sample` plug-in command for
the GPT. Starlette + uvicorn serve three static files and a JSON API (`serve.app`); the web
dependencies are the `vistok[serve]` extra and are imported only here.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tokenizers_vis.errors import VistokError
from tokenizers_vis.serve.page import Limits, Page, ViewRequest

__all__ = ["Limits", "Page", "Server", "ViewRequest", "require_web"]

MISSING = (
    "vistok serve needs the web extra: pip install 'vistok[serve]' (starlette, uvicorn); "
    "tools/setup.sh installs it"
)


def require_web() -> None:
    """Raise a one-line VistokError when starlette / uvicorn are not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise VistokError(MISSING) from None


class Server:
    """uvicorn serving a page: `run()` in the foreground, or a context manager that serves from
    a thread (tests, benchmarks). Binds 127.0.0.1 unless told otherwise."""

    def __init__(self, page: Page, host: str = "127.0.0.1", port: int = 7860) -> None:
        require_web()
        import uvicorn

        from tokenizers_vis.serve.app import create_app

        config = uvicorn.Config(
            create_app(page), host=host, port=port, log_level="warning", access_log=False,
            lifespan="on", timeout_graceful_shutdown=5,
        )  # fmt: skip
        self.page, self.server = page, uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        sockets = [s for server in self.server.servers for s in server.sockets]
        host, port = sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def run(self) -> None:
        """Serve until Ctrl-C."""
        self.server.run()

    def __enter__(self) -> Server:
        self._thread = threading.Thread(target=self.server.run, name="vistok-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise VistokError("the server did not start (is the port taken?)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
