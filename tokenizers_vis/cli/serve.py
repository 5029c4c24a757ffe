"""`vistok serve`: a local page to see what k tokens keep (needs `pip install 'vistok[serve]'`).

    vistok serve [--model NAME|DIR ...] [--host 127.0.0.1] [--port 7860]

Upload, paste or pick an image, move the token slider: the page decodes the first k tokens
beside the original and JPEG / WebP at the closest bytes, shows the decodes at k = 1, 2, 4, ..,
K and the ids, downloads the .vtok file for k and decodes uploaded ones; a second tab samples
the shipped GPT. It binds 127.0.0.1 (this machine only) unless --host says otherwise.
"""

from __future__ import annotations

import sys

from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    limits_from_args,
    positive,
    run,
)
from tokenizers_vis.limits import DEFAULT_LIMITS

PROG = "vistok serve"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        action="append",
        default=[],
        help="a pretrained tokenizer directory or shipped name to serve besides the shipped "
        "ones (repeatable)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free)")
    p.add_argument("--gpt", default="gpt_emoji", help="GPT of the generation tab")
    p.add_argument("--max-upload-mb", type=positive, default=20, help="largest upload (MB)")
    p.add_argument(
        "--max-pixels", type=positive, default=4096 * 4096, help="largest image, in pixels"
    )
    p.add_argument(
        "--max-tiles", type=positive, default=256, help="most tiles an image codes (256)"
    )
    p.add_argument(
        "--auto-tiles", type=positive, default=16, help="most tiles of the automatic scale (16)"
    )
    # One intra-op thread: as fast for 32 px tiles, and it never spins against other work on a
    # small shared machine (2 threads there made slider moves seconds long); raise it for
    # large images on an idle machine.
    p.add_argument("--threads", type=positive, default=1, help="torch threads (default 1)")
    add_limit_flags(p)  # loading --model and --gpt (--max-pixels is the request limit above)
    return p


def free_port(host: str, port: int = 0) -> int:
    """`port` if it can be bound on `host` now (0: one the OS picks), before minutes of model
    loading, so a taken port or a bad address is one line up front."""
    import socket

    from tokenizers_vis.errors import VistokError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
            return int(s.getsockname()[1])
    except OSError as err:
        hint = " (--port 0 picks a free one)" if port else ""
        raise VistokError(f"cannot listen on {host}:{port}: {err.strerror}{hint}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)

    def body() -> int:
        from tokenizers_vis.serve import Limits, Page, Server, require_web

        require_web()
        if not 0 <= args.port <= 65535:
            from tokenizers_vis.errors import VistokError

            raise VistokError(f"--port must be in 0..65535, got {args.port}")
        port = free_port(args.host, args.port)
        import torch

        torch.set_num_threads(args.threads)
        limits = Limits(
            max_upload_bytes=args.max_upload_mb * 2**20,
            max_pixels=args.max_pixels,
            max_tiles=args.max_tiles,
            auto_tiles=args.auto_tiles,
        )
        # --max-pixels is the request limit (checked by the page); the models' own pixel limit
        # is never below the library's, so a tile canvas rounded up past it is not refused.
        pixels = max(args.max_pixels, DEFAULT_LIMITS.max_pixels)
        models = limits_from_args(args).replace(
            max_pixels=pixels, warn_pixels=max(DEFAULT_LIMITS.warn_pixels, pixels // 2)
        )
        page = Page(args.model, gpt=args.gpt, limits=limits, input_limits=models)
        server = Server(page, args.host, port)
        where = "" if args.host in ("127.0.0.1", "localhost", "::1") else " (reachable from "
        where += "other machines)" if where else ""
        print(f"{PROG}: http://{args.host}:{port}/{where}; Ctrl-C stops", flush=True)
        try:
            server.run()
        finally:
            page.close()
        return 0

    return run(body, PROG)


if __name__ == "__main__":
    raise SystemExit(main())
