"""The demo's token-file section: held-out emoji and photos through the codec's batch functions
(`tokenizers_vis.cli.batch`, what `vistok encode` / `vistok decode` run).

Each set is written as image files, encoded to .vtok files at several k, decoded back at the
files' own size, and scored against the files it started from (PSNR of the decoded PNG), so the
table shows what a user of the codec gets: bytes on disk and quality, per k.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers_vis.cli.batch import Summary, decode_files, encode_files
from tokenizers_vis.limits import Limits

DEMO_KS = (4, 16, 64)


def write_sources(src: Path, count: int, image_size: int, photo_size: int) -> dict[str, list[str]]:
    """Held-out emoji and photo crops as PNG files under `src`, plus one full-size photo;
    returns {set name: [file stems]}."""
    from PIL import Image
    from skimage import data as skdata

    from tokenizers_vis.data import build_dataset
    from tokenizers_vis.data.transforms import to_pil

    sets: dict[str, list[str]] = {"emoji": [], "photos": []}
    for name, size in (("emoji", image_size), ("photos", photo_size)):
        (src / name).mkdir(parents=True, exist_ok=True)
        data = build_dataset(name, "test", size)
        for i in range(min(count, len(data))):
            stem = f"{name}_{i:02d}"
            to_pil(data[i][0]).save(src / name / f"{stem}.png")
            sets[name].append(stem)
    (src / "photo").mkdir(parents=True, exist_ok=True)
    # A JPEG source: the codec reads any format Pillow does, at any size and aspect.
    Image.fromarray(skdata.chelsea()).save(src / "photo" / "chelsea_451x300.jpg", quality=90)
    sets["photo"] = ["chelsea_451x300"]
    return sets


def mean_psnr(sources: list[Path], decoded: list[Path]) -> float:
    """Mean PSNR (dB) of decoded files against their sources, pixel for pixel at full size."""
    import torch

    from tokenizers_vis.data.transforms import load_rgb, to_tensor
    from tokenizers_vis.metrics.reconstruction import psnr

    values = []
    for a, b in zip(sources, decoded, strict=True):
        x, y = to_tensor(load_rgb(a))[None], to_tensor(load_rgb(b))[None]
        if x.shape != y.shape:
            raise RuntimeError(f"{b} decoded at {tuple(y.shape[2:])}, source {tuple(x.shape[2:])}")
        values.append(psnr(y, x))
    return float(torch.cat(values).mean())


def run(c, src: Path, vtok: Path, back: Path, k: int) -> tuple[Summary, Summary]:
    from tokenizers_vis import codec

    options = codec.EncodeOptions(num_tokens=k)
    enc = encode_files(c, [str(src)], str(vtok), options, overwrite=True)
    dec = decode_files(c, [str(vtok)], str(back), overwrite=True)
    if not (enc.ok and dec.ok):
        raise RuntimeError(f"codec demo failed: {enc.line()} / {dec.line()}")
    return enc, dec


def token_files(
    out: Path, model: str, photo_model: str, count: int = 16, limits: Limits | None = None
) -> list[str]:
    """Encode / decode the held-out sets at every k of `DEMO_KS`; returns Markdown lines.

    Emoji go through `model`, photos through `photo_model` (the same tokenizer when no photo
    tokenizer ships).
    """
    from tokenizers_vis import codec

    root = out / "codec"
    models = dict.fromkeys((model, photo_model))
    codecs = {m: codec.Codec.from_pretrained(m, limits=limits) for m in models}
    size = {m: c.tokenizer.image_size for m, c in codecs.items()}
    sets = write_sources(root / "images", count, size[model], size[photo_model])
    which = {"emoji": model, "photos": photo_model, "photo": photo_model}
    head = "| set | tokenizer | k | files | bytes per file | PSNR of the decoded file |"
    lines = [
        "## Token files: `vistok encode` / `vistok decode`",
        "",
        head,
        "|---|---|---:|---:|---:|---:|",
    ]
    details = []
    for name, stems in sets.items():
        src = root / "images" / name
        for k in DEMO_KS:
            vtok, back = root / "vtok" / name / f"k{k}", root / "decoded" / name / f"k{k}"
            enc, dec = run(codecs[which[name]], src, vtok, back, k)
            sources = sorted(p for p in src.iterdir() if p.stem in stems)
            decoded = [back / f"{p.stem}.png" for p in sources]
            per_file = enc.bytes_out / max(enc.done, 1)
            db = mean_psnr(sources, decoded)
            label = "1 photo, 451x300 JPEG" if name == "photo" else f"held-out {name}"
            lines.append(
                f"| {label} | `{which[name]}` | {k} | {enc.done} | {per_file:.0f} | {db:.2f} |"
            )
            details.append(f"- {name}, k = {k}: {enc.line()}; decode: {dec.line()}")
    from PIL import Image

    shape = Image.open(root / "decoded" / "photo" / "k64" / "chelsea_451x300.png").size
    lines += [
        "",
        f"The 451x300 photo comes back at {shape[0]}x{shape[1]} (tiles of the model's "
        f"{size[photo_model]} px; its bytes are the sum over tiles). Files under "
        f"`codec/vtok/`, decoded images under `codec/decoded/`; `vistok info FILE.vtok` prints "
        "a header. Format: `docs/token-format.md`.",
        "",
        *details,
        "",
    ]
    return lines
