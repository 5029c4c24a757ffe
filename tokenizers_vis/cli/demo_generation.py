"""The demo's generative sections: both decoders on the same tokens, and a GPT sample grid.

The GPT lives in the `generation` package, which `tokenizers_vis` never imports: the grid comes
from the Python function behind its `sample` command (`write_samples`), whose module is found
through the `vistok.commands` entry points like any plug-in's.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import Limits

SIDE_BY_SIDE_KS = (1, 2, 4, 8)


class DemoError(VistokError):
    """A demo section cannot run with what the user gave it (reported in one line, exit 2)."""


NO_RF_DECODER = (
    "No rectified-flow decoder is installed (the package ships `emoji32_rf`; a trimmed install "
    "may leave it out). Train one with `configs/tokenizer/emoji32_fsq_rf_decoder.yaml` and pass "
    "`--rf-model DIR` to see it here beside the ViT decoder."
)


def decoders_side_by_side(
    out: Path, vit_name: str, rf_name: str | None, count: int = 8, limits: Limits | None = None
) -> list[str]:
    """The same ids of held-out emoji through the ViT decoder and a rectified-flow decoder at
    small k: a grid and PSNR per k. Returns Markdown lines."""
    lines = ["## Two decoders on the same tokens", ""]
    if rf_name is None:
        return lines + [NO_RF_DECODER, ""]
    import torch

    from tokenizers_vis import Tokenizer, Tokens
    from tokenizers_vis.data import build_dataset
    from tokenizers_vis.evaluation.report import grid_png
    from tokenizers_vis.metrics.reconstruction import psnr

    vit = Tokenizer.from_pretrained(vit_name, limits=limits).eval()
    rf = Tokenizer.from_pretrained(rf_name, limits=limits).eval()
    if not rf.decoder.generative:
        raise DemoError(f"--rf-model {rf_name}: its decoder is deterministic, not a rectified flow")
    data = build_dataset("emoji", "test", vit.image_size)
    images = torch.stack([data[i][0] for i in range(min(count, len(data)))])
    with torch.no_grad():
        ids = vit.encode(images).ids
        if not torch.equal(ids, rf.encode(images).ids):
            raise DemoError(f"--rf-model {rf_name}: its encoder gives other ids than {vit_name}'s")
        rows, table = [("input", images)], []
        for k in SIDE_BY_SIDE_KS:
            a = vit.decode(Tokens(ids[:, :k]))
            b = rf.decode(Tokens(ids[:, :k]), generator=torch.Generator().manual_seed(k))
            rows += [(f"ViT k={k}", a), (f"RF k={k}", b)]
            table.append(f"| {k} | {psnr(a, images).mean():.2f} | {psnr(b, images).mean():.2f} |")
    atomic_write(out / "decoders.png", grid_png(rows))
    lines += [
        f"`{vit_name}` (ViT) and `{rf_name}` (rectified flow) on {len(images)} test emoji.",
        "",
    ]
    lines += ["![decoders](decoders.png)", "", "| k | ViT PSNR | RF PSNR |", "|---:|---:|---:|"]
    return lines + table + [""]


def gpt_grid(
    out: Path,
    gpt: str,
    num_tokens: int,
    cfg: float,
    per_class: int = 8,
    limits: Limits | None = None,
) -> list[str]:
    """Class-conditional samples of a GPT decoded by its tokenizer; returns Markdown lines.

    The `sample` plug-in command's module (found through its entry point) offers the Python
    function its command runs, `write_samples(gpt, out, **settings) -> samples.json contents`;
    its user errors are `VistokError`s and reach the demo's `run` as they are.
    """
    from tokenizers_vis.cli.main import commands

    lines = ["## Generation: GPT samples", ""]
    table = commands()
    if "sample" not in table:
        return lines + ["The `generation` package is not installed: no `vistok sample`.", ""]
    write_samples = getattr(importlib.import_module(table["sample"][0]), "write_samples", None)
    if write_samples is None:
        raise DemoError(f"the `sample` command ({table['sample'][0]}) has no write_samples()")
    folder = out / "gpt"
    settings = dict(num_tokens=num_tokens, cfg=cfg, n=per_class, grid_cols=per_class)
    meta = write_samples(gpt, folder, **settings, overwrite=True, quiet=True, limits=limits)
    names = list(dict.fromkeys(meta["class_names"] or ["unconditional"]))
    argv = ["--gpt", gpt, "--num-tokens", str(num_tokens), "--cfg", str(cfg), "--n", str(per_class)]
    argv += ["--grid-cols", str(per_class), "--quiet", "--overwrite", "-o", str(folder)]
    lines += [
        f"`vistok sample {' '.join(argv)}`: {len(meta['labels'])} samples of `{gpt}`, "
        f"{num_tokens} tokens each, classifier-free guidance {cfg}, decoded by "
        f"`{meta['tokenizer']}`. One row per class: {', '.join(names)}.",
        "",
        "![GPT samples](gpt/grid.png)",
        "",
        "Scores (gFID / KID per k and guidance) are in the GPT's model card and "
        "`reports/gpt-emoji32/`; `vistok eval generator --samples gpt/samples.npz --data emoji "
        "--split test` scores these.",
        "",
    ]
    return lines
