"""Golden fixtures (and a full-size check) for the TiTok and One-D-Piece families.

Runs the *reference* code outside this repository on seeded random weights and records what it
computes, so tests/test_golden_titok.py can hold vistok's converted models to it:

    /work/refs/.venv/bin/python tools/golden/titok.py --family titok \\
        --reference /path/to/bytedance/1d-tokenizer
    /work/refs/.venv/bin/python tools/golden/titok.py --family one_d_piece \\
        --reference /path/to/turingmotors/One-D-Piece
    OMP_NUM_THREADS=2 /work/refs/.venv/bin/python tools/golden/titok.py --family titok \\
        --reference ... --full-size        # every published size, compared in-process, printed

The interpreter needs the reference's dependencies (torch, omegaconf, einops, huggingface_hub) and
safetensors; nothing of the reference is imported into vistok. Tiny models come from the
reference's own classes: their widths are fixed per named size inside the reference, so a subclass
made here overrides just those three numbers (width, depth, heads) and the MaskGIT-VQGAN's config.

A fixture holds the reference state dict in its own key names, prefixed by source ("model:...",
"vqgan:..."), stored in fp16 (every weight was rounded to fp16 before the reference ran, so fp32
copies of them are exactly the weights that produced the outputs; half the bytes), the input
images ([0, 1], the reference's range), and the reference's pre-quantisation latents, ids and
decodes, plus the config, repository and commit in the metadata.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "golden"
REPOS = {"titok": "bytedance/1d-tokenizer", "one_d_piece": "turingmotors/One-D-Piece"}


def import_reference(checkout: Path) -> types.SimpleNamespace:
    """The reference modules; `accelerate` (training-only, imported at load time) is stubbed."""
    ops = types.ModuleType("accelerate.utils.operations")
    ops.gather = None  # only the training-time clustering VQ calls it
    for name, module in {
        "accelerate": types.ModuleType("accelerate"),
        "accelerate.utils": types.ModuleType("accelerate.utils"),
        "accelerate.utils.operations": ops,
    }.items():
        sys.modules.setdefault(name, module)
    sys.path.insert(0, str(checkout))
    import modeling.modules.blocks as blocks
    import modeling.modules.maskgit_vqgan as vqgan
    import modeling.titok as titok
    from omegaconf import OmegaConf

    ns = types.SimpleNamespace(blocks=blocks, vqgan=vqgan, titok=titok, OmegaConf=OmegaConf)
    try:
        import modeling.one_d_piece as one_d_piece

        ns.one_d_piece = one_d_piece
    except ImportError:
        ns.one_d_piece = None
    return ns


def fixed_sizes(cls: type, width: int, depth: int, heads: int) -> type:
    """`cls` whose width / num_layers / num_heads ignore the per-size table it assigns them."""
    pinned = {
        name: property(lambda self, v=value: v, lambda self, _: None)
        for name, value in (("width", width), ("num_layers", depth), ("num_heads", heads))
    }
    return type(cls.__name__, (cls,), pinned)


def vqgan_conf(ref: types.SimpleNamespace, hidden: int, mult: list[int], blocks: int, z: int):
    return ref.OmegaConf.create(
        {
            "channel_mult": mult,
            "num_resolutions": len(mult),
            "dropout": 0.0,
            "hidden_channels": hidden,
            "num_channels": 3,
            "num_res_blocks": blocks,
            "resolution": 256,
            "z_channels": z,
        }
    )


def perturb(model: torch.nn.Module, seed: int, peaky: tuple[str, ...] = ()) -> None:
    """Every parameter moved off its init (norms and biases too), then rounded to fp16 values.

    `peaky` names parameters scaled up so softmax outputs are far from uniform (a uniform code
    distribution would hide a wrong codebook order)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.2 * (p.abs().mean().item() + 0.02)
            p.add_(scale * torch.randn(p.shape, generator=g))
            if name in peaky:
                p.mul_(30.0)
            p.copy_(p.half().float())


def images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n 3 s s) in [0, 1]: smooth gradients plus noise, so patches differ."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size)])
    base = torch.cat([base, base.mean(0, keepdim=True)])  # (3 s s)
    return (0.6 * base + 0.4 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def commit(checkout: Path) -> str:
    return subprocess.check_output(["git", "-C", str(checkout), "rev-parse", "HEAD"], text=True)


def tiny_config(variant: str, family: str) -> dict[str, Any]:
    """Reference config (OmegaConf layout) of a tiny model; sizes are pinned in `build`."""
    vq = {
        "codebook_size": 64,
        "token_size": 8,
        "use_l2_norm": True,
        "commitment_cost": 0.25,
        "vit_enc_model_size": "small",
        "vit_dec_model_size": "small",
        "vit_enc_patch_size": 4,
        "vit_dec_patch_size": 2,
        "num_latent_tokens": 8,
        "finetune_decoder": True,
    }
    if variant == "vq8k":
        vq |= {"codebook_size": 96, "token_size": 16, "use_l2_norm": False}
        vq |= {"finetune_decoder": False, "is_legacy": False, "vit_dec_patch_size": 4}
    if family == "one_d_piece":
        vq |= {"num_latent_tokens": 12, "strict_length_assertion": False}
        vq["vit_dec_patch_size"] = 1
    config = {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": 16}}}
    if family == "one_d_piece":
        config["model"]["type"] = "one_d_piece"
    return config


# Tiny sizes: (encoder width, depth, heads), (decoder ...), VQGAN (hidden, mult, blocks, z).
TINY = {
    ("titok", "legacy"): ((32, 2, 2), (32, 2, 4), (32, [2, 1], 1, 8)),
    ("titok", "vq8k"): ((32, 2, 2), (48, 2, 3), None),
    ("one_d_piece", "legacy"): ((32, 1, 2), (16, 2, 2), (32, [1], 1, 8)),
}


def build_tiny(ref: types.SimpleNamespace, family: str, variant: str) -> tuple[Any, dict]:
    """A tiny reference model from the reference's own classes (sizes pinned, see module doc)."""
    (ew, ed, eh), (dw, dd, dh), pixel = TINY[(family, variant)]
    ref.titok.TiTokEncoder = fixed_sizes(ref.blocks.TiTokEncoder, ew, ed, eh)
    ref.titok.TiTokDecoder = fixed_sizes(ref.blocks.TiTokDecoder, dw, dd, dh)
    vqgan_config = None
    if pixel is not None:
        hidden, mult, blocks, z = pixel
        vqgan_config = vqgan_conf(ref, hidden, mult, blocks, z)
        ref.titok.Pixel_Decoder = lambda _conf: ref.vqgan.Decoder(vqgan_config)
        ref.titok.Pixel_Quantizer = lambda **_kw: ref.vqgan.VectorQuantizer(1024, z, 0.25)
    config = tiny_config(variant, family)
    # The reference ignores these (its sizes are pinned above); they tell the converter the heads.
    config["model"]["vq_model"] |= {"vit_enc_num_heads": eh, "vit_dec_num_heads": dh}
    cls = ref.one_d_piece.OneDPiece if family == "one_d_piece" else ref.titok.TiTok
    model = cls(config).eval()
    sizes = {"encoder": [ew, ed, eh], "decoder": [dw, dd, dh]}
    if vqgan_config is not None:
        sizes["vqgan"] = ref.OmegaConf.to_container(vqgan_config)
    return model, config | {"tiny_sizes": sizes}


def spread_codebook(model: Any, x: torch.Tensor) -> None:
    """An un-normalised codebook drawn at the latents' scale, so many codes are in use."""
    with torch.no_grad():
        z = model.encoder(pixel_values=x, latent_tokens=model.latent_tokens)
        book = model.quantize.embedding.weight
        g = torch.Generator().manual_seed(7)
        book.copy_((torch.randn(book.shape, generator=g) * z.std() + z.mean()).half().float())


@torch.no_grad()
def reference_outputs(model: Any, x: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """latents (b d 1 n), ids (b 1 n), margins and decodes (b 3 h w) at each k, unclamped."""
    z = model.encoder(pixel_values=x, latent_tokens=model.latent_tokens)  # (b d 1 n)
    _, result = model.quantize(z)
    ids = result["min_encoding_indices"]  # (b 1 n)
    out = {"latents": z.contiguous(), "ids": ids.contiguous(), "margin": id_margin(model, z)}
    for k in ks:
        if k == z.shape[-1]:
            out[f"pixels_k{k}"] = model.decode_tokens(ids).contiguous()
        else:
            out[f"pixels_k{k}"] = model.decode_tokens(ids, length=k).contiguous()
    return out


def id_margin(model: Any, z: torch.Tensor) -> torch.Tensor:
    """Smallest gap between the best and second-best code distance: how robust the ids are."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()
    book = model.quantize.embedding.weight
    if model.quantize.use_l2_norm:
        flat, book = (
            torch.nn.functional.normalize(flat, dim=-1),
            torch.nn.functional.normalize(book, dim=-1),
        )
    d = torch.cdist(flat, book).square()
    two = d.topk(2, dim=1, largest=False).values
    return (two[:, 1] - two[:, 0]).min().reshape(1)


def split_sources(state: dict[str, torch.Tensor], vqgan_file: bool) -> dict[str, torch.Tensor]:
    """The reference state dict prefixed by source. `vqgan_file`: the VQGAN leaves the model
    checkpoint and becomes its published file's layout (decoder.*, quantize.embedding.weight)."""
    out = {}
    for key, value in state.items():
        if vqgan_file and key.startswith("pixel_decoder."):
            out["vqgan:decoder." + key.removeprefix("pixel_decoder.")] = value
        elif vqgan_file and key == "pixel_quantize.embedding.weight":
            out["vqgan:quantize.embedding.weight"] = value
        else:
            out["model:" + key] = value
    return {k: v.half().contiguous() for k, v in out.items()}


def write(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in meta.items()})
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


def fixture(ref: types.SimpleNamespace, family: str, variant: str, checkout: Path) -> None:
    model, config = build_tiny(ref, family, variant)
    perturb(model, seed=zlib.crc32(f"{family}_{variant}".encode()), peaky=("decoder.ffn.2.weight",))
    x = images(2, 16, seed=1)
    if variant == "vq8k":
        spread_codebook(model, x)
    n = config["model"]["vq_model"]["num_latent_tokens"]
    ks = [n] if family == "titok" else [1, 5, n]
    out = reference_outputs(model, x, ks)
    assert out["margin"].item() > 2e-4, f"ids too close to a tie: {out['margin']}"
    assert out["ids"].unique().numel() > 3, "ids barely vary; the fixture would prove little"
    state = split_sources(model.state_dict(), vqgan_file=family == "titok")
    tensors = state | {"images": x} | {f"out:{k}": v for k, v in out.items()}
    meta = {
        "repository": REPOS[family],
        "commit": commit(checkout).strip(),
        "reference_class": type(model).__name__,
        "config": config,
        "ks": ks,
        "weights_dtype": "float16 (exact: the reference ran on these values in fp32)",
        "generated_by": "tools/golden/titok.py",
    }
    write(f"{family}_{variant}", tensors, meta)


def vqgan_fixture(ref: types.SimpleNamespace, checkout: Path) -> None:
    """The MaskGIT-VQGAN decoder alone: its own class at a tiny size, hard code maps -> pixels."""
    conf = vqgan_conf(ref, 32, [2, 1], 1, 8)
    decoder = ref.vqgan.Decoder(conf).eval()
    quantize = ref.vqgan.VectorQuantizer(1024, 8, 0.25)
    holder = torch.nn.ModuleDict({"decoder": decoder, "quantize": quantize})
    perturb(holder, seed=11)
    ids = torch.randint(0, 1024, (2, 4, 4), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pixels = decoder(quantize.get_codebook_entry(ids))  # (b 3 8 8), unclamped
    state = {f"vqgan:{k}": v.half().contiguous() for k, v in holder.state_dict().items()}
    meta = {
        "repository": REPOS["titok"],
        "commit": commit(checkout).strip(),
        "reference_class": "modeling.modules.maskgit_vqgan.Decoder",
        "config": ref.OmegaConf.to_container(conf),
        "weights_dtype": "float16 (exact: the reference ran on these values in fp32)",
        "generated_by": "tools/golden/titok.py",
    }
    write("maskgit_vqgan_tiny", state | {"ids": ids, "out:pixels": pixels.contiguous()}, meta)


PUBLISHED = {
    "titok": {
        "titok_l32_vq": "configs/infer/TiTok/titok_l32.yaml",
        "titok_b64_vq": "configs/infer/TiTok/titok_b64.yaml",
        "titok_s128_vq": "configs/infer/TiTok/titok_s128.yaml",
        "titok_bl64_vq8k": "configs/infer/TiTok/titok_bl64_vq8k.yaml",
        "titok_bl128_vq8k": "configs/infer/TiTok/titok_bl128_vq8k.yaml",
        "titok_sl256_vq8k": "configs/infer/TiTok/titok_sl256_vq8k.yaml",
    },
    "one_d_piece": {
        "one_d_piece_s256": "configs/one-d-piece_s256.yaml",
        "one_d_piece_b256": "configs/one-d-piece_b256.yaml",
        "one_d_piece_l256": "configs/one-d-piece_l256.yaml",
    },
}


@torch.no_grad()
def full_size(ref: types.SimpleNamespace, family: str, checkout: Path, only: list[str]) -> None:
    """Every published size on random weights: reference vs converted vistok, one table row each."""
    sys.path.insert(0, str(ROOT))
    import tokenizers_vis.convert.one_d_piece  # noqa: F401  (registration)
    import tokenizers_vis.convert.titok  # noqa: F401  (registration)
    from tokenizers_vis import Tokenizer
    from tokenizers_vis.convert.base import FAMILIES

    print(
        "| preset | params (ours) | matched preset | max abs latent diff | ids equal | k |"
        " max abs pixel diff ([0, 1] units) | max abs pixel | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for preset, yaml in PUBLISHED[family].items():
        if only and preset not in only:
            continue
        start = time.time()
        config = ref.OmegaConf.load(checkout / yaml)
        cls = ref.one_d_piece.OneDPiece if family == "one_d_piece" else ref.titok.TiTok
        model = cls(config).eval()
        perturb(model, seed=zlib.crc32(preset.encode()), peaky=("decoder.ffn.2.weight",))
        x = images(2, 256, seed=5)
        if "vq8k" in preset:
            spread_codebook(model, x)
        n = config.model.vq_model.num_latent_tokens
        ks = [n] if family == "titok" else [16, n]
        want = reference_outputs(model, x, ks)
        plain = ref.OmegaConf.to_container(config, resolve=True)
        converted = FAMILIES[family].convert({"model": model.state_dict()}, plain)
        del model
        ours = Tokenizer(**converted.spec).eval()
        ours.load_state_dict(converted.state, strict=True)
        del converted
        got = vistok_outputs(ours, x, ks)
        params = sum(p.numel() for p in ours.parameters())
        latent = (got["latents"] - want["latents"]).abs().max().item()
        same = (got["ids"] == want["ids"]).float().mean().item() * 100
        for k in ks:
            pix = (got[f"pixels_k{k}"] - want[f"pixels_k{k}"]).abs().max().item()
            top = want[f"pixels_k{k}"].abs().max().item()
            print(
                f"| {preset} | {params / 1e6:.2f} M | {got['preset']} | {latent:.2e} |"
                f" {same:.1f} % | {k} | {pix:.2e} | {top:.2f} | {time.time() - start:.0f} |",
                flush=True,
            )
        del ours


def vistok_outputs(tok: Any, x: torch.Tensor, ks: list[int]) -> dict[str, Any]:
    """The same quantities from vistok, in the reference's layouts and [0, 1] pixel units."""
    from einops import rearrange

    images = x * 2 - 1  # vistok images are in [-1, 1]
    latents = tok.encoder(images)  # (b n d)
    ids = tok.quantizer(latents).ids  # (b n 1)
    out = {
        "latents": rearrange(latents, "b n d -> b d 1 n"),
        "ids": rearrange(ids, "b n 1 -> b 1 n"),
    }
    for k in ks:
        out[f"pixels_k{k}"] = (decode_unclamped(tok, ids, k) + 1) / 2
    out["preset"] = getattr(tok, "_preset", None)
    return out


def decode_unclamped(tok: Any, ids: torch.Tensor, k: int) -> torch.Tensor:
    """Tokenizer.decode without its final clamp (random weights overshoot [-1, 1])."""
    codes = tok.quantizer.ids_to_codes(ids)  # (b K d)
    lengths = torch.full((ids.shape[0],), k)
    tokens, key_mask = tok.token_drop(codes, lengths)
    return tok.decoder.sample(tokens, key_mask)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=sorted(REPOS), required=True)
    parser.add_argument("--reference", type=Path, required=True, help="the reference checkout")
    parser.add_argument("--full-size", action="store_true", help="compare every published size")
    parser.add_argument("--only", nargs="*", default=[], help="full size: these presets only")
    args = parser.parse_args(argv)
    torch.manual_seed(0)  # the reference initialises with the global RNG
    ref = import_reference(args.reference.resolve())
    if args.full_size:
        full_size(ref, args.family, args.reference.resolve(), args.only)
    elif args.family == "titok":
        fixture(ref, "titok", "legacy", args.reference)
        fixture(ref, "titok", "vq8k", args.reference)
        vqgan_fixture(ref, args.reference)
    else:
        fixture(ref, "one_d_piece", "legacy", args.reference)


if __name__ == "__main__":
    main()
