"""Full-size check of the FlexTok conversion: the published sizes, random weights, one process.

    PYTHONPATH=.:/work/refs/ml-flextok /work/refs/.venv/bin/python \\
        tools/golden/flextok_compare.py --reference /work/refs/ml-flextok --size d12

builds the reference at a published size (`tools/golden/flextok.py --full-size`'s config: 256 px,
the published VAE architecture, 256 registers) with seeded random weights, runs it on random
256x256 images, converts its state dict with `convert/flextok.py`, loads it into our preset
(sharing the tensors, so a d28 fits in memory once) and prints the max abs differences of the VAE
latents, register latents and decoder velocities, and the share of equal ids. It runs in the
reference's environment because it needs both models at once; the reference's code stays there.
Not part of the test suite (minutes per size on a CPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch


def golden_module(reference: Path):
    """tools/golden/flextok.py, loaded under another name (it is named like the reference)."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(reference)] + [p for p in sys.path if Path(p or ".").resolve() != here]
    spec = importlib.util.spec_from_file_location("golden_flextok", here / "flextok.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--size", choices=["d12", "d18", "d28"], required=True)
    parser.add_argument("--images", type=int, default=1)
    args = parser.parse_args()
    golden = golden_module(args.reference)
    import tokenizers_vis.convert.flextok  # noqa: F401  (registers the family)
    from tokenizers_vis import Tokenizer
    from tokenizers_vis.convert.base import FAMILIES
    from tokenizers_vis.presets import merge

    start = time.time()
    size = golden.full_size(args.size, args.images)
    cfg = golden.config(size)
    reference = golden.build(size, cfg, half=False)
    out = golden.run(reference, size)
    print(f"reference ran in {time.time() - start:.0f} s", flush=True)
    saved = golden.saved_config(cfg)
    converted = FAMILIES["flextok"].convert({"model": reference.state_dict()}, saved)
    del reference
    assert not converted.unmapped, converted.unmapped
    with torch.device("meta"):
        tok = Tokenizer(**converted.spec)
    tok.load_state_dict(converted.state, strict=True, assign=True)
    # Non-persistent buffers (position tables, masks, FSQ tables) are not in any state dict:
    # take them from a one-block build of the same spec, which has the same ones.
    one_block = merge(converted.spec, {"encoder": {"depth": 1}, "decoder": {"depth": 1}})
    for name, buffer in Tokenizer(**one_block).named_buffers():
        module, _, attr = name.rpartition(".")
        setattr(tok.get_submodule(module), attr, buffer)
    tok.eval()
    params = sum(p.numel() for p in tok.parameters())
    images = out["images_uint8"].float() / 127.5 - 1.0
    rows = [f"size {args.size} (preset {converted.preset}), {params / 1e6:.1f}M parameters"]
    with torch.no_grad():
        rows.append(
            f"vae latents max abs diff {max_diff(tok.encoder.vae(images), out['vae_latents'])}"
        )
        registers = tok.encoder(images)
        rows.append(f"register latents max abs diff {max_diff(registers, out['register_latents'])}")
        ids = tok.quantizer(registers).ids[..., 0]
        rows.append(f"ids equal {100 * (ids == out['ids']).float().mean():.2f} %")
        codes = tok.quantizer.ids_to_codes(out["ids"][..., None])
        for k in size["ks"]:
            tokens, key_mask = tok.token_drop(codes, torch.full((codes.shape[0],), k))
            v = tok.decoder.velocity(out["noised"], out["t"], tokens, key_mask)
            rows.append(f"velocity k={k} max abs diff {max_diff(v, out[f'velocity_k{k}'])}")
    rows.append(f"total {time.time() - start:.0f} s")
    print("\n".join(rows))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return (
        f"{(a.float() - b.float()).abs().max().item():.3g} (max |ref| {b.abs().max().item():.3g})"
    )


if __name__ == "__main__":
    main()
