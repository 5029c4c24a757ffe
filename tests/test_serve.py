"""`vistok serve` at the HTTP level (no browser): every malformed request gets a one-line error
and the server serves the next one; good requests show what the codec and metrics compute."""

from __future__ import annotations

import io
import json
import socket
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

from tokenizers_vis import codec
from tokenizers_vis.cli import serve as serve_cli
from tokenizers_vis.serve import Limits, Page, Server
from tokenizers_vis.serve.images import LRU
from tokenizers_vis.serve.page import powers_of_two
from tokenizers_vis.serve.views import layout_scale

MAX_UPLOAD = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, one_thread):
    workdir = tmp_path_factory.mktemp("serve-workdir")
    page = Page(limits=Limits(max_upload_bytes=MAX_UPLOAD), workdir=workdir)
    with Server(page, port=0) as running:
        yield running
    page.close()


def call(server, path: str, data: bytes | None = None, method: str | None = None):
    """(status, parsed JSON or raw bytes) of one request."""
    req = urllib.request.Request(server.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, body, kind = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        status, body, kind = err.code, err.read(), err.headers.get("content-type", "")
    return status, json.loads(body) if kind.startswith("application/json") else body


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and which holds almost no data (a bomb's
    first bytes: the page must refuse it from the header, before decoding anything)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = b"IDAT" + zlib.compress(b"\0" * 64)
    body += struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture(scope="module")
def emoji(server) -> tuple[str, Image.Image]:
    """A held-out emoji uploaded as a PNG file: (image key, the image)."""
    label, image = next(v for k, v in server.page.examples().items() if k.startswith("emoji"))
    status, desc = call(server, "/api/image", png(image), "POST")
    assert status == 200, desc
    return desc["image"], image


def view(server, key: str, **params):
    query = "&".join(f"{k}={v}" for k, v in {"image": key, "model": "emoji32", **params}.items())
    return call(server, f"/api/view?{query}")


def test_malformed_uploads_are_refused_in_one_line_and_the_server_serves_the_next(server):
    photo = png(Image.new("RGB", (40, 30), (200, 10, 10)))
    bad = {
        "zero bytes": (b"", "empty"),
        "garbage": (b"\x00\xffgarbage" * 50, "not an image"),
        "not an image": (b"just some text, certainly not a picture\n", "not an image"),
        "truncated PNG": (photo[: len(photo) // 2], "not an image"),
        "20,000 x 20,000 PNG": (png_header_only(20_000, 20_000), "too large"),
        "over the byte limit": (b"\0" * (MAX_UPLOAD + 1), "over the upload limit"),
    }
    for name, (data, words) in bad.items():
        start = time.perf_counter()
        status, answer = call(server, "/api/image", data, "POST")
        assert status == 400, (name, answer)
        assert words in answer["error"] and "Traceback" not in answer["error"], name
        assert "\n" not in answer["error"]
        assert time.perf_counter() - start < 5, f"{name}: decoded instead of refused?"
    status, desc = call(server, "/api/image", photo, "POST")  # and the next good one works
    assert status == 200 and (desc["width"], desc["height"]) == (40, 30)
    assert list(server.page.workdir.iterdir()) == []  # uploads never touch the disk


def test_bad_parameters_are_refused(server, emoji):
    key, _ = emoji
    for params, words in [
        ({"k": 0}, "k must be in 1..64"),
        ({"k": 65}, "k must be in 1..64"),
        ({"k": "many"}, "k must be an integer"),
        ({"k": 4, "model": "nope"}, "unknown tokenizer"),
        ({"k": 4, "decoder": "photo32"}, "does not decode"),
        ({"k": 4, "layout": "spiral"}, "unknown layout"),
        ({"k": 4, "scale": "2"}, "scale must be in (0, 1]"),
        ({"k": 4, "image": "../../etc/passwd"}, "unknown image"),
    ]:
        status, answer = view(server, key, **params)
        assert status == 400 and words in answer["error"], (params, answer)
    status, answer = call(server, "/api/no-such-thing")
    assert status == 404 and "error" in answer
    status, answer = call(server, "/api/image")  # GET where only POST is served
    assert status == 405 and "error" in answer


def test_view_shows_token_bytes_and_codecs_at_closest_bytes(server, emoji):
    key, image = emoji
    bits = 12  # emoji32: one codebook of 4096
    for k in (1, 4, 64):
        status, v = view(server, key, k=k)
        assert status == 200, v
        assert v["decoded"]["bytes"] == k * bits / 8
        assert v["decoded"]["bpp"] == pytest.approx(k * bits / (32 * 32))
        assert v["tiles"] == 1 and len(v["ids"]["values"][0]) == k
        for name in ("jpeg", "webp"):
            assert v[name]["bytes"] > 0 and v[name]["psnr"] > 5 and 0 < v[name]["ssim"] <= 1
    status, low = view(server, key, k=1)
    status, high = view(server, key, k=64)
    assert high["decoded"]["psnr"] > low["decoded"]["psnr"] + 1  # more tokens, closer image
    assert high["decoded"]["src"] != low["decoded"]["src"]


def test_vtok_download_is_what_the_codec_writes_and_decodes_back(server, emoji):
    key, image = emoji
    status, data = call(server, f"/api/vtok?image={key}&model=emoji32&k=8")
    assert status == 200
    c = server.page.models.get("emoji32").codec
    assert data == c.encode_image(image, num_tokens=8)
    status, decoded = call(server, "/api/decode-vtok?model=emoji32", data, "POST")
    assert status == 200 and decoded["header"]["lengths"] == [8]
    assert decoded["decoded"]["vtok_bytes"] == len(data)


def test_bad_vtok_files_get_the_codec_errors(server, emoji):
    key, image = emoji
    photo = server.page.models.get("photo32").codec.encode_image(image, num_tokens=8)
    good = server.page.models.get("emoji32").codec.encode_image(image, num_tokens=8)
    cases = {
        "wrong model": (photo, "written by tokenizer"),
        "zero bytes": (b"", "empty"),
        "truncated": (good[:10], "truncated"),
        "corrupted": (good[:-6] + bytes([good[-6] ^ 0xFF]) + good[-5:], "corrupted"),
        "not a vtok": (png(image), "not a .vtok"),
    }
    for name, (data, words) in cases.items():
        status, answer = call(server, "/api/decode-vtok?model=emoji32", data, "POST")
        assert status == 400 and words in answer["error"].lower(), (name, answer)
    status, _ = call(server, "/api/decode-vtok?model=emoji32", good, "POST")
    assert status == 200


def wait(server, job: dict, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        status, job = call(server, f"/api/jobs/{job['job']}")
        assert status == 200, job
    return job


def test_rectified_flow_decodes_as_a_job_that_can_be_cancelled(server, emoji):
    key, _ = emoji
    status, job = view(server, key, k=4, decoder="emoji32_rf", steps=2, seed=3)
    assert status == 200 and "job" in job
    done = wait(server, job)
    assert done["state"] == "done" and done["result"]["decoder"] == "emoji32_rf"
    status, job = view(server, key, k=4, decoder="emoji32_rf", steps=200, seed=4)
    while job["state"] == "queued":
        status, job = call(server, f"/api/jobs/{job['job']}")
    start = time.perf_counter()
    status, job = call(server, f"/api/jobs/{job['job']}/cancel", b"", "POST")
    assert wait(server, job)["state"] == "cancelled"
    assert time.perf_counter() - start < 5  # stopped inside the sampler, not after 200 steps


def test_generation_grid_through_the_sample_plug_in_leaves_no_files(server):
    if not server.page.generator.info["available"]:
        pytest.fail(f"generation unavailable: {server.page.generator.info}")
    status, job = call(server, "/api/generate?class=smileys&k=4&n=2&guidance=2", b"", "POST")
    assert status == 200, job
    done = wait(server, job)
    assert done["state"] == "done", done
    assert [len(r["images"]) for r in done["result"]["rows"]] == [2]
    status, answer = call(server, "/api/generate?class=dragons&k=4", b"", "POST")
    assert status == 400 and "unknown class" in answer["error"]
    assert list(server.page.workdir.iterdir()) == []  # the temp folder is clean afterwards


def test_helpers():
    assert powers_of_two(64) == [1, 2, 4, 8, 16, 32, 64]
    assert powers_of_two(48) == [1, 2, 4, 8, 16, 32, 48]
    assert layout_scale((451, 300), 32, "tile", "auto", 256, 64) == ("tile", 0.5)  # 8x5 tiles
    assert layout_scale((451, 300), 32, "tile", "auto", 256, 16) == ("tile", 0.25)  # 4x3
    assert layout_scale((451, 300), 32, "tile", "1", 256, 16) == ("tile", 1.0)  # 15x10
    with pytest.raises(ValueError, match="at most 100"):
        layout_scale((451, 300), 32, "tile", "1", 100, 16)
    assert layout_scale((451, 300), 32, "resize", "auto", 256, 16) == ("resize", 1.0)
    lru = LRU(10, cost=len)
    for key in ("a", "b", "c"):
        lru.put(key, "xxxx")
    assert lru.get("a") is None and lru.get("c") == "xxxx"


def test_cli_without_the_web_extra_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `vistok[serve]` were missing
    assert serve_cli.main(["--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'vistok[serve]'" in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_bad_ports_in_one_line(capsys):
    assert serve_cli.main(["--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err
    assert serve_cli.main(["--max-tiles", "0"]) == 2
    capsys.readouterr()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert serve_cli.main(["--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1" in err and len(err.strip().splitlines()) == 1


def test_large_images_use_the_tile_rules(server):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 100, 3), np.uint8))
    status, desc = call(server, "/api/image", png(image), "POST")
    assert status == 200
    status, v = call(server, f"/api/view?image={desc['image']}&model=photo32&k=2&scale=1")
    assert status == 200, v
    assert v["tiles"] == 4 * 3 and v["decoded"]["bytes"] == 12 * 2 * 12 / 8
    assert "4x3 = 12 tiles" in v["layout_text"]
    header, _ = codec.read_header(
        call(server, f"/api/vtok?image={desc['image']}&model=photo32&k=2&scale=1")[1]
    )
    assert header.size == (100, 70) and header.lengths == (2,) * 12


def test_a_vtok_asking_for_more_than_the_page_decodes_is_refused(server):
    tiles = 94 * 94  # 3000 x 3000 in 32 px tiles: a small file that asks for 8,836 decodes
    header = codec.Header(
        tokenizer_id=codec.directory_identity("emoji32"),
        size=(3000, 3000),
        tile_size=32,
        max_tokens=64,
        vocab_sizes=(4096,),
        lengths=(1,) * tiles,
    )
    data = codec.dumps(header, np.zeros((tiles, 1, 1), np.int64))
    start = time.perf_counter()
    status, answer = call(server, "/api/decode-vtok?model=emoji32", data, "POST")
    assert status == 400 and "more than this page decodes" in answer["error"], answer
    assert time.perf_counter() - start < 5


def test_a_large_image_decodes_as_a_job(server):
    noise = np.random.default_rng(1).integers(0, 255, (1100, 1000, 3), np.uint8)
    status, desc = call(server, "/api/image", png(Image.fromarray(noise)), "POST")
    assert status == 400 and "over the upload limit" in desc["error"]  # 3 MB > the test limit
    ramp = np.linspace(0, 255, 1000, dtype=np.uint8)
    smooth = Image.fromarray(np.stack([np.tile(ramp, (1100, 1))] * 3, -1))  # 1.1 MP
    buf = io.BytesIO()
    smooth.save(buf, format="JPEG", quality=50)
    status, desc = call(server, "/api/image", buf.getvalue(), "POST")
    assert status == 200, desc
    status, job = call(server, f"/api/view?image={desc['image']}&model=photo32&k=1&scale=0.125")
    assert status == 200 and "job" in job, job
    done = wait(server, job)
    assert done["state"] == "done" and done["result"]["tiles"] == 4 * 5, done
