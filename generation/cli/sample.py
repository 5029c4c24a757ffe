"""sample images from a GPT: k tokens, decoded by the tokenizer, written with a grid

    vistok sample --gpt DIR [--tokenizer DIR|NAME] [--class NAME|ID ...] [--num-tokens k]
        [--cfg s] [--cfg-schedule constant|linear_up|linear_down] [--temperature T] [--top-k K]
        [--top-p P] [--n N] [--batch-size B] [--seed S] [--no-cache] [--device auto]
        [--precision auto] [--overwrite] -o OUT

`--n` samples of every class given (`--class`, repeatable: a name or an id, `null` for the
unconditional branch); without --class, of every class the GPT knows (or N unconditional samples
for an unconditional GPT). The tokenizer defaults to the one the GPT was trained on (its config's
`extra.tokenizer`). Writes:

    OUT/images/000000.png ...   one PNG per sample (`vistok eval generator --samples OUT/images`)
    OUT/grid.png                a row per class, its first --grid-cols samples
    OUT/samples.npz             samples (n h w 3) uint8, labels (n,), ids (n k g)
    OUT/samples.json            the settings and the class of every sample

The same seed and batch size give the same images. Each file is written to a temporary name and
renamed, so none is ever half-written.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from generation.gpt import GPT
from generation.sampling import CFG_SCHEDULES, IncompatibleModelsError, check_compatible, generate
from tokenizers_vis import Tokenizer, Tokens
from tokenizers_vis.atomic import atomic_write, atomic_write_with
from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    limits_from_args,
    non_negative,
    positive,
    run,
)
from tokenizers_vis.data import to_uint8
from tokenizers_vis.errors import UsageError
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.limits import Limits
from tokenizers_vis.precision import PRECISIONS, autocast, pick_device

PROG = "vistok sample"


@dataclass
class SampleSettings:
    """What to sample and where to write it: the command's options, one field each (see the
    module docstring); `write_samples` takes them as keywords."""

    gpt: Path
    out: Path
    tokenizer: str | None = None
    classes: list[str] | None = None
    num_tokens: int | None = None
    cfg: float | None = None
    cfg_schedule: str = "constant"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    n: int = 8
    batch_size: int = 64
    grid_cols: int = 8
    seed: int = 0
    no_cache: bool = False
    device: str = "auto"
    precision: str = "auto"
    overwrite: bool = False
    quiet: bool = False
    limits: Limits | None = None  # loading the GPT and the tokenizer (None: DEFAULT_LIMITS)


def resolve_classes(gpt: GPT, names: list[str] | None) -> list[int]:
    """--class values (names, ids, "null") -> labels; default every class, or null."""
    if not names:
        return list(range(gpt.num_classes)) if gpt.num_classes else [gpt.null_class]
    labels = []
    for name in names:
        if name.lower() in ("null", "none"):
            labels.append(gpt.null_class)
        elif name.isdigit() and int(name) < gpt.num_classes:
            labels.append(int(name))
        elif name in gpt.class_names:
            labels.append(gpt.class_names.index(name))
        elif gpt.num_classes == 0:
            raise UsageError(f"--class {name}: this GPT is unconditional (no classes)")
        else:
            known = ", ".join(gpt.class_names) or f"ids 0..{gpt.num_classes - 1}"
            raise UsageError(f"--class {name}: unknown; known: {known}, null")
    return labels


def load_models(args: SampleSettings, device: torch.device) -> tuple[GPT, Tokenizer, str]:
    try:
        found = GPT.open_pretrained(args.gpt, args.limits)
        gpt = GPT.from_pretrained(found, map_location=device, limits=args.limits)
    except PretrainedError as err:
        raise UsageError(f"--gpt {args.gpt}: {err}") from None
    name = args.tokenizer or found.extra.get("tokenizer")
    if not name:
        raise UsageError(f"--gpt {args.gpt} does not record its tokenizer: give --tokenizer")
    try:
        tok = Tokenizer.from_pretrained(name, map_location=device, limits=args.limits)
        check_compatible(gpt, tok)
    except (PretrainedError, IncompatibleModelsError) as err:
        raise UsageError(f"--tokenizer {name}: {err}") from None
    return gpt, tok, str(name)


def sample_all(
    gpt: GPT, tok: Tokenizer, labels: list[int], args: SampleSettings, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n 3 h w) uint8 on the CPU, ids (n k g)) in batches of --batch-size."""
    generator = torch.Generator(device).manual_seed(args.seed)
    options = dict(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        cfg_scale=args.cfg,
        cfg_schedule=args.cfg_schedule,
        use_cache=not args.no_cache,
        generator=generator,
    )
    images, ids = [], []
    bar = tqdm(total=len(labels), desc="sample", unit="img", disable=args.quiet)
    for start in range(0, len(labels), args.batch_size):
        batch = torch.tensor(labels[start : start + args.batch_size], device=device)
        with autocast(device, args.precision):
            out = generate(gpt, args.num_tokens, batch, **options)  # (b k g)
            x = tok.decode(Tokens(out), generator=generator)  # (b 3 h w)
        images.append(to_uint8(x.cpu()))
        ids.append(out.cpu())
        bar.update(len(batch))
    bar.close()
    return torch.cat(images), torch.cat(ids)


def grid(images: torch.Tensor, labels: list[int], cols: int) -> Image.Image:
    """A row per class (in the order given), its first `cols` samples; uint8 (n 3 h w) in."""
    from torchvision.utils import make_grid

    rows = []
    for label in dict.fromkeys(labels):
        picked = [i for i, y in enumerate(labels) if y == label][:cols]
        row = images[picked]
        pad = cols - len(picked)
        rows.append(torch.cat([row, row.new_full((pad, *row.shape[1:]), 255)]) if pad else row)
    tiled = make_grid(torch.cat(rows), nrow=cols, padding=2, pad_value=255)  # (3 H W)
    return Image.fromarray(tiled.permute(1, 2, 0).numpy())


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_outputs(
    out: Path, images: torch.Tensor, ids: torch.Tensor, labels: list[int], meta: dict[str, Any]
) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    hwc = images.permute(0, 2, 3, 1).numpy()  # (n h w 3)
    for i, image in enumerate(hwc):
        atomic_write(out / "images" / f"{i:06d}.png", _png(Image.fromarray(image)))
    atomic_write(out / "grid.png", _png(grid(images, labels, meta["grid_cols"])))
    arrays = {"samples": hwc, "labels": np.asarray(labels), "ids": ids.numpy()}

    def write_npz(tmp: Path) -> None:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)

    atomic_write_with(out / "samples.npz", write_npz)
    atomic_write(out / "samples.json", (json.dumps(meta, indent=1) + "\n").encode())


def prepare_out(out: Path, overwrite: bool) -> None:
    old = sorted((out / "images").glob("*.png")) if (out / "images").is_dir() else []
    if (old or (out / "samples.npz").exists()) and not overwrite:
        raise UsageError(f"-o {out} already holds samples; use --overwrite")
    for path in old:  # a smaller run must not leave a larger one's images behind
        path.unlink()


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gpt", type=Path, required=True, help="pretrained GPT directory")
    p.add_argument("--tokenizer", help="tokenizer directory or name (default: the GPT's)")
    p.add_argument("--class", dest="classes", action="append", help="class name, id or null")
    p.add_argument("--num-tokens", type=positive, help="tokens per image, 1..K (default K)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (default none)")
    p.add_argument("--cfg-schedule", default="constant", choices=list(CFG_SCHEDULES))
    p.add_argument("--temperature", type=float, default=1.0, help="0 takes the argmax")
    p.add_argument(
        "--top-k", type=non_negative, default=0, help="keep the k likeliest ids (0: all)"
    )
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (1: all)")
    p.add_argument("--n", type=positive, default=8, help="samples per class (default 8)")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--grid-cols", type=positive, default=8, help="samples per grid row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="recompute the prefix every step")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS))
    p.add_argument("--overwrite", action="store_true", help="replace samples in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    add_limit_flags(p)
    return p


def check_args(args: SampleSettings, gpt: GPT) -> None:
    k = args.num_tokens
    if k is not None and not 1 <= k <= gpt.max_tokens:
        raise UsageError(f"--num-tokens must be in 1..{gpt.max_tokens}, got {k}")
    if min(args.n, args.batch_size, args.grid_cols) < 1 or args.top_k < 0:
        raise UsageError("--n, --batch-size and --grid-cols must be positive, --top-k >= 0")
    if not 0 < args.top_p <= 1 or args.temperature < 0:
        raise UsageError("--top-p must be in (0, 1] and --temperature >= 0")


def write_samples(gpt: str | Path, out: str | Path, **options: Any) -> dict[str, Any]:
    """Sample a GPT and write OUT (images, grid.png, samples.npz, samples.json): what `vistok
    sample` runs, callable from Python (the `vistok demo` finds it through this command's entry
    point). `options` are `SampleSettings` fields.

    Returns:
        The contents of samples.json (settings, tokenizer name, every sample's class).

    Raises:
        VistokError: a user error (a GPT or tokenizer that cannot be loaded or do not match, a
            setting out of range, OUT holding samples without overwrite=True, out of memory).
    """
    args = SampleSettings(gpt=Path(gpt), out=Path(out), **options)
    device = pick_device(args.device)  # DeviceError names the device
    gpt_model, tok, tok_name = load_models(args, device)
    check_args(args, gpt_model)
    classes = resolve_classes(gpt_model, args.classes)
    prepare_out(args.out, args.overwrite)
    labels = [c for c in classes for _ in range(args.n)]
    try:
        images, ids = sample_all(gpt_model, tok, labels, args, device)
    except torch.OutOfMemoryError:  # a batch too large for the device is the user's to change
        raise UsageError(f"out of memory at --batch-size {args.batch_size}; lower it") from None
    names = [*gpt_model.class_names, "null"] if gpt_model.class_names else None
    meta = {
        "gpt": str(args.gpt),
        "tokenizer": tok_name,
        "num_tokens": ids.shape[1],
        **{k: getattr(args, k) for k in ("cfg", "cfg_schedule", "temperature", "top_k")},
        **{k: getattr(args, k) for k in ("top_p", "seed", "batch_size", "grid_cols")},
        "labels": labels,
        "class_names": [names[y] for y in labels] if names else None,
    }
    write_outputs(args.out, images, ids, labels, meta)
    return meta


def sample(argv: list[str] | None) -> int:
    parsed = build_parser().parse_args(argv)
    limits = limits_from_args(parsed)
    options = vars(parsed)
    for flag in ("max_pixels", "max_config_bytes", "max_parameters", "max_memory"):
        options.pop(flag)  # given to SampleSettings as `limits`
    options["limits"] = limits
    out = options.pop("out")
    meta = write_samples(options.pop("gpt"), out, **options)
    print(f"wrote {len(meta['labels'])} samples, grid.png and samples.npz to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `vistok sample`; returns the exit status."""
    return run(lambda: sample(argv), PROG, writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
