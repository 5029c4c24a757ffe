"""Peak memory and time of decoding one large honest .vtok file (issue 22, item 5).

    PYTHONPATH=. .venv/bin/python tools/stream_decode_bench.py [--tiles 100000] [--repo DIR]
        [--label after] [--stub-decoder] [--out reports/hostile-inputs]

Writes one bit-packed file of `--tiles` emoji32 tiles (32 px, k = 64 random ids, a 400-tile
wide canvas) and decodes it with `Codec.decode_bytes` in a child process run from `--repo`
(default this checkout; a copy of an older revision gives the "before" numbers). Reported:
seconds of the decode, the child's resident memory once the model is loaded and the file
read, its peak during the decode (VmHWM, reset through /proc/self/clear_refs just before),
and what the decode added. `--stub-decoder` replaces the tokenizer's
decoder by one that returns grey tiles at once, so the pipeline around it (unpacking, batching,
assembling the image) is measured at full size on a CPU where 100,000 real decodes would take
an hour; without it the real decoder runs. Appends to `<out>/stream-decode.json` and rewrites
`<out>/stream-decode.md`; not a test: times depend on the machine and its load (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.identity import directory_identity
from tokenizers_vis.precision import cpu_model_name

COLUMNS = 400  # tiles per row: 100,000 tiles make a 12,800 x 8,000 canvas (102 M pixels)

CHILD = """
import json, resource, sys, time, warnings
import torch
torch.set_num_threads(1)
from tokenizers_vis.codec import Codec
codec = Codec.from_pretrained("emoji32", device=sys.argv[4], batch_size=int(sys.argv[3]))
if sys.argv[2] == "stub":
    s = codec.tokenizer.image_size
    codec.tokenizer.decode = lambda tokens, **kw: torch.zeros(len(tokens.ids), 3, s, s,
                                                              device=codec.device)
def status(field):  # kB
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
data = open(sys.argv[1], "rb").read()
load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current RSS
loaded = status("VmRSS:")
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # 102 M pixels is above the warning size
    image = codec.decode_bytes(data)
seconds = time.perf_counter() - start
peak = status("VmHWM:")
print(json.dumps({"seconds": seconds, "rss_loaded_mb": loaded / 1024, "rss_peak_mb": peak / 1024,
                  "load_peak_mb": load_peak / 1024, "size": image.size}))
"""


def write_file(path: Path, tiles: int, k: int) -> int:
    """A bit-packed emoji32 file of `tiles` tiles at k random ids each; returns its bytes."""
    rows = -(-tiles // COLUMNS)
    cols = min(tiles, COLUMNS)
    if cols * rows != tiles:
        raise SystemExit(f"--tiles must be a multiple of {COLUMNS} (or fewer)")
    tid = directory_identity("emoji32")
    header = fmt.Header(tid, (32 * cols, 32 * rows), 32, 64, (4096,), (k,) * tiles)
    ids = np.random.default_rng(0).integers(0, 4096, (tiles, k, 1))  # (T k 1)
    data = fmt.dumps(header, ids)
    path.write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda (a GPU runs 100,000 real tiles)")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--label", default="after")
    parser.add_argument("--stub-decoder", action="store_true")
    parser.add_argument("--out", default="reports/hostile-inputs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.vtok"
        size = write_file(path, args.tiles, args.k)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=args.repo)
        mode = "stub" if args.stub_decoder else "real"
        argv = [sys.executable, "-c", CHILD, str(path), mode, str(args.batch_size), args.device]
        done = subprocess.run(argv, cwd=args.repo, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"decode failed: {done.stderr.strip().splitlines()[-1]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    row = {
        "label": args.label,
        "repo": args.repo,
        "decoder": "stub (grey tiles)" if args.stub_decoder else "emoji32",
        "tiles": args.tiles,
        "k": args.k,
        "file_bytes": size,
        "batch_size": args.batch_size,
        "device": args.device,
        "seconds": round(result["seconds"], 2),
        "tiles_per_s": round(args.tiles / result["seconds"], 1),
        "rss_loaded_mb": round(result["rss_loaded_mb"], 1),
        "rss_peak_mb": round(result["rss_peak_mb"], 1),
        "load_peak_mb": round(result["load_peak_mb"], 1),
        "decode_added_mb": round(result["rss_peak_mb"] - result["rss_loaded_mb"], 1),
        "image": result["size"],
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "stream-decode.json"
    rows = json.loads(log.read_text()) if log.exists() else []
    rows.append(row)
    atomic_write(log, (json.dumps(rows, indent=2) + "\n").encode())
    lines = [
        "# Decoding one large honest .vtok file: time and peak memory",
        "",
        "`tools/stream_decode_bench.py`; one thread (OMP_NUM_THREADS=1), `Codec.decode_bytes`",
        "of a bit-packed emoji32 file (32 px tiles, 400 tiles a row, random ids), in a fresh",
        "process. 'added' = peak RSS during the decode (VmHWM reset just before it) minus",
        "RSS before it.",
        "",
        "| code | decoder | tiles | k | file MB | s | tiles/s | added MB | peak MB | CPU | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['decoder']} | {r['tiles']:,} | {r['k']} | "
            f"{r['file_bytes'] / 1e6:.2f} | {r['seconds']} | {r['tiles_per_s']} | "
            f"{r['decode_added_mb']} | {r['rss_peak_mb']} | {r['cpu']} ({r['cores']} cores) | "
            f"{r['load_average'][0]} |"
        )
    atomic_write(out / "stream-decode.md", ("\n".join(lines) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
