"""Published TiTok checkpoints (Yu et al., 2024; bytedance/1d-tokenizer) -> vistok specs and keys.

Two kinds share one layout of names:
- stage-2 ("legacy") models, TiTok-L-32 / B-64 / S-128: L2-normalised VQ 4,096 x 12, an encoder code
  head that reads the latents in raw memory order, a decoder that predicts logits over the
  MaskGIT-VQGAN's 1,024 codes, decoded by that VQGAN (`pixel_decoder.*` / `pixel_quantize.*` in the
  checkpoint, or the VQGAN's own published file as source "vqgan");
- VQ8k models, TiTok-BL-64 / BL-128 / SL-256: VQ 8,192 x 64 (not normalised), per-token code head,
  a per-patch pixel head and a 3x3 output conv.

What the conversion folds (exactly, in fp32): positions into the tokens they are added to (class
token, patch queries = mask token + positions, latent tokens + their positions) and the published
[0, 1] pixel range into the first and last convolutions (vistok images are in [-1, 1]). The one
group deliberately left out is the VQGAN file's `encoder.*` (a tokenizer never encodes to VQGAN
codes); every other tensor is mapped or reported unmapped.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from tokenizers_vis.convert.base import ConversionError, Converted, Family, register_family
from tokenizers_vis.presets import PRESETS, PUBLISHED_VIT, titok_spec

# Heads are not in the shapes: the published configs name a size, and a size fixes them.
MODEL_SIZES = {"small": "S", "base": "B", "large": "L"}
HEADS_BY_WIDTH = {width: heads for width, _, heads in PUBLISHED_VIT.values()}

# Our key -> their key, per transformer block (timm Block <- open_clip-style block).
BLOCK_KEYS = {
    "norm1": "ln_1",
    "attn.qkv.weight": "attn.in_proj_weight",
    "attn.qkv.bias": "attn.in_proj_bias",
    "attn.proj": "attn.out_proj",
    "norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
# Tensors whose presence says "this is a TiTok checkpoint".
SIGNATURE = ("latent_tokens", "encoder.positional_embedding", "decoder.mask_token")


class Source:
    """One source's tensors; records which keys were taken, so the rest can be reported."""

    def __init__(self, name: str, tensors: dict[str, Tensor]) -> None:
        self.name, self.tensors, self.used = name, tensors, set()

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def take(self, key: str) -> Tensor:
        if key not in self.tensors:
            raise ConversionError(f"{self.name}: missing tensor {key!r}")
        self.used.add(key)
        return self.tensors[key].float()

    def count(self, pattern: str) -> int:
        """How many distinct integers fill `{}` in keys matching `pattern` (e.g. blocks)."""
        regex = re.compile(re.escape(pattern).replace(r"\{\}", r"(\d+)"))
        return len({m.group(1) for k in self.tensors if (m := regex.match(k))})

    def unused(self) -> list[str]:
        return [f"{self.name}:{k}" for k in sorted(set(self.tensors) - self.used)]


def check_family(model: Source, family: str) -> None:
    """Raise when the tensors are not a TiTok-layout checkpoint, naming the keys that tell."""
    missing = [k for k in SIGNATURE if k not in model]
    if missing:
        sample = ", ".join(sorted(model.tensors)[:5]) or "(no tensors)"
        raise ConversionError(
            f"model: not a {family} checkpoint: no {', '.join(map(repr, missing))}"
            f" (found e.g. {sample})"
        )


def vq_model_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The `model.vq_model` section of a published config.json ({} when absent)."""
    if not config:
        return {}
    config = config.get("config", config)  # some uploads wrap the OmegaConf dict once more
    return dict(config.get("model", {}).get("vq_model", {}))


def vit_shape(src: Source, part: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Width, depth, heads and grid of `encoder` / `decoder`: shapes, and heads from the config.

    Heads come from `vit_{enc,dec}_num_heads` when the config has it (published configs do not;
    our tiny golden fixtures do), else from the named size (which must agree with the width),
    else from the width when it is a published one."""
    short = part[:3]
    width = src.tensors[f"{part}.positional_embedding"].shape[-1]
    depth = src.count(f"{part}.transformer.{{}}.")
    size = cfg.get(f"vit_{short}_model_size")
    if f"vit_{short}_num_heads" in cfg:
        heads = int(cfg[f"vit_{short}_num_heads"])
    elif size is not None:
        named_width, _, heads = PUBLISHED_VIT[MODEL_SIZES[size]]
        if named_width != width:
            raise ConversionError(
                f"config.json names vit_{short}_model_size {size!r} ({named_width} wide) but"
                f" {part}.positional_embedding is {width} wide"
            )
    elif width in HEADS_BY_WIDTH:
        heads = HEADS_BY_WIDTH[width]
    else:
        raise ConversionError(
            f"model: {part} width {width} is no published size; pass the config.json that"
            f" names vit_{short}_model_size"
        )
    grid = math.isqrt(src.tensors[f"{part}.positional_embedding"].shape[0] - 1)
    return {"width": width, "depth": depth, "num_heads": heads, "grid": grid}


def vqgan_shape(tensors: dict[str, Tensor], prefix: str) -> dict[str, Any]:
    """The MaskGIT-VQGAN decoder's size parameters from its tensors under `prefix`."""
    levels = len({k.split(".")[2] for k in tensors if k.startswith(f"{prefix}up.")})
    widths = [tensors[f"{prefix}up.{i}.block.0.conv2.weight"].shape[0] for i in range(levels)]
    channels = math.gcd(*widths)
    blocks = len({k.split(".")[4] for k in tensors if k.startswith(f"{prefix}up.0.block.")})
    return {
        "channels": channels,
        "channel_mult": [w // channels for w in widths],
        "num_res_blocks": blocks,
        "code_dim": tensors[f"{prefix}conv_in.weight"].shape[1],
    }


def derive_spec(model: Source, vqgan: Source | None, config: dict[str, Any] | None) -> dict:
    """The tokenizer spec these tensors (and config.json, when given) describe."""
    cfg = vq_model_config(config)
    legacy = "decoder.ffn.2.weight" in model
    enc = vit_shape(model, "encoder", cfg)
    dec = vit_shape(model, "decoder", cfg)
    enc_patch = model.tensors["encoder.patch_embed.weight"].shape[-1]
    image_size = enc["grid"] * enc_patch
    codebook, dim = model.tensors["quantize.embedding.weight"].shape
    normalize = bool(cfg.get("use_l2_norm", legacy))
    spec = titok_spec("B", "B", model.tensors["latent_tokens"].shape[0], vq8k=not legacy)
    spec["image_size"] = image_size
    spec["quantizer"] |= {"codebook_size": codebook, "dim": dim, "normalize": normalize}
    for part, shape, patch in (("encoder", enc, enc_patch), ("decoder", dec, None)):
        spec[part] |= {k: shape[k] for k in ("width", "depth", "num_heads")}
        spec[part]["patch_size"] = patch or image_size // shape["grid"]
    if legacy:
        if "pixel_decoder.conv_in.weight" in model:
            sizes = vqgan_shape(model.tensors, "pixel_decoder.")
        elif vqgan is not None:
            sizes = vqgan_shape(vqgan.tensors, "decoder.")
        else:
            raise ConversionError(
                "model: no pixel_decoder.* tensors; this TiTok decodes through the MaskGIT-VQGAN,"
                " so pass its published weights as the 'vqgan' source"
            )
        codes = model.tensors["decoder.ffn.2.weight"].shape[0]
        spec["decoder"]["pixel_decoder"] = {"name": "maskgit_vqgan", "codebook_size": codes}
        spec["decoder"]["pixel_decoder"] |= sizes
    return spec


def match_preset(spec: dict[str, Any], names: list[str]) -> str | None:
    """The published preset equal to `spec` (defaults filled in), or None."""
    from tokenizers_vis.tokenizer import Tokenizer

    with torch.device("meta"):
        built = Tokenizer(**spec).state_dict()
    shapes = {k: v.shape for k, v in built.items()}
    for name in names:
        with torch.device("meta"):
            preset = Tokenizer(**PRESETS[name]).state_dict()
        same_specs = normalized(PRESETS[name]) == normalized(spec)
        if same_specs and shapes == {k: v.shape for k, v in preset.items()}:
            return name
    return None


def normalized(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec with the pixel decoder's published defaults written out, for comparison."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}
    pixel = out["decoder"].get("pixel_decoder")
    if pixel is not None:
        published = {"codebook_size": 1024, "code_dim": 256, "channels": 128}
        published |= {"channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2}
        out["decoder"]["pixel_decoder"] = published | {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in pixel.items()
        }
    return out


def map_vit(src: Source, part: str, depth: int) -> dict[str, Tensor]:
    """The transformer stack of `encoder` / `decoder`: blocks, ln_pre, ln_post (our final norm)."""
    out: dict[str, Tensor] = {}
    for i in range(depth):
        theirs, ours = f"{part}.transformer.{i}.", f"{part}.transformer.blocks.{i}."
        for our_key, their_key in BLOCK_KEYS.items():
            names = [""] if our_key.endswith(("weight", "bias")) else [".weight", ".bias"]
            for suffix in names:
                out[ours + our_key + suffix] = src.take(theirs + their_key + suffix)
    for suffix in ("weight", "bias"):
        out[f"{part}.ln_pre.{suffix}"] = src.take(f"{part}.ln_pre.{suffix}")
        out[f"{part}.transformer.norm.{suffix}"] = src.take(f"{part}.ln_post.{suffix}")
    return out


def map_encoder(src: Source, depth: int) -> dict[str, Tensor]:
    """Encoder tensors; folds positions into tokens and [0, 1] inputs into the patch conv."""
    positions = src.take("encoder.positional_embedding")  # (1+p w)
    weight = src.take("encoder.patch_embed.weight")  # (w 3 ph pw)
    # conv((x + 1) / 2) = conv_{W/2}(x) + b + sum(W)/2: the patch conv takes [-1, 1] directly.
    bias = src.take("encoder.patch_embed.bias") + weight.sum(dim=(1, 2, 3)) / 2
    latents = src.take("latent_tokens") + src.take("encoder.latent_token_positional_embedding")
    head = src.take("encoder.conv_out.weight")  # (d w 1 1)
    return {
        "encoder.patch_embed.proj.weight": weight / 2,
        "encoder.patch_embed.proj.bias": bias,
        "encoder.class_token": rearrange(
            src.take("encoder.class_embedding") + positions[:1], "1 w -> 1 1 w"
        ),
        "encoder.patch_positions": rearrange(positions[1:], "p w -> 1 p w"),
        "encoder.latent_tokens": rearrange(latents, "n w -> 1 n w"),
        "encoder.to_codes.weight": rearrange(head, "d w 1 1 -> d w"),
        "encoder.to_codes.bias": src.take("encoder.conv_out.bias"),
        **map_vit(src, "encoder", depth),
    }


def map_decoder(src: Source, depth: int) -> dict[str, Tensor]:
    """Decoder transformer and embeddings: mask token + positions become the patch queries."""
    positions = src.take("decoder.positional_embedding")  # (1+p w)
    queries = src.take("decoder.mask_token") + positions[1:]  # (1 p w)
    return {
        "decoder.token_in.weight": src.take("decoder.decoder_embed.weight"),
        "decoder.token_in.bias": src.take("decoder.decoder_embed.bias"),
        "decoder.token_positions": rearrange(
            src.take("decoder.latent_token_positional_embedding"), "n w -> 1 n w"
        ),
        "decoder.class_token": rearrange(
            src.take("decoder.class_embedding") + positions[:1], "1 w -> 1 1 w"
        ),
        "decoder.patch_queries": queries,
        **map_vit(src, "decoder", depth),
    }


def fold_output_range(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """A last conv that produced [0, 1] images, changed to produce 2y - 1 in [-1, 1]."""
    return 2 * weight, 2 * bias - 1


def map_decoder_head(src: Source, legacy: bool) -> dict[str, Tensor]:
    """The per-patch head: logits MLP (legacy) or pixel head + 3x3 output conv (VQ8k)."""
    flat = "o i 1 1 -> o i"
    if legacy:
        return {
            f"decoder.to_logits.{i}.{kind}": (
                rearrange(src.take(f"decoder.ffn.{i}.weight"), flat)
                if kind == "weight"
                else src.take(f"decoder.ffn.{i}.bias")
            )
            for i in (0, 2)
            for kind in ("weight", "bias")
        }
    weight, bias = fold_output_range(
        src.take("decoder.conv_out.weight"), src.take("decoder.conv_out.bias")
    )
    return {
        "decoder.to_pixels.weight": rearrange(src.take("decoder.ffn.0.weight"), flat),
        "decoder.to_pixels.bias": src.take("decoder.ffn.0.bias"),
        "decoder.output_conv.weight": weight,
        "decoder.output_conv.bias": bias,
    }


RES_BLOCK_KEYS = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2"}
RES_BLOCK_KEYS["shortcut"] = "nin_shortcut"


def map_vqgan(src: Source, prefix: str, codebook_key: str, ours: str) -> dict[str, Tensor]:
    """The MaskGIT-VQGAN decoder + codebook under `prefix` -> our pixel decoder under `ours`."""
    out = {f"{ours}codebook": src.take(codebook_key)}
    levels = src.count(f"{prefix}up.{{}}.")
    pairs = [("conv_in", "conv_in"), ("norm_out", "norm_out")]
    for j in range(src.count(f"{prefix}mid.{{}}.")):
        pairs += [(f"mid.{j}.{a}", f"mid.{j}.{b}") for a, b in RES_BLOCK_KEYS.items()]
    for i in range(levels):
        stage = f"stages.{levels - 1 - i}"  # ours run coarse to fine, in order
        for j in range(src.count(f"{prefix}up.{i}.block.{{}}.")):
            pairs += [
                (f"{stage}.blocks.{j}.{a}", f"up.{i}.block.{j}.{b}")
                for a, b in RES_BLOCK_KEYS.items()
            ]
        pairs.append((f"{stage}.upsample", f"up.{i}.upsample_conv"))
    for our_key, their_key in pairs:
        for suffix in (".weight", ".bias"):
            if prefix + their_key + suffix in src:
                out[ours + our_key + suffix] = src.take(prefix + their_key + suffix)
    weight, bias = src.take(f"{prefix}conv_out.weight"), src.take(f"{prefix}conv_out.bias")
    out[f"{ours}conv_out.weight"], out[f"{ours}conv_out.bias"] = fold_output_range(weight, bias)
    return out


def convert_titok(
    family: str,
    tensors: dict[str, dict[str, Tensor]],
    config: dict[str, Any] | None,
    tail_drop: bool,
    presets: list[str],
) -> Converted:
    """The shared body of the TiTok and One-D-Piece families."""
    if "model" not in tensors:
        raise ConversionError(f"{family}: no 'model' source given")
    model = Source("model", tensors["model"])
    vqgan = Source("vqgan", tensors["vqgan"]) if "vqgan" in tensors else None
    check_family(model, family)
    spec = derive_spec(model, vqgan, config)
    spec["token_drop"]["drop_prob"] = 1.0 if tail_drop else 0.0
    legacy = "pixel_decoder" in spec["decoder"]
    state = {
        "quantizer.codebook": model.take("quantize.embedding.weight"),
        "token_drop.mask_token": torch.zeros(1, 1, spec["quantizer"]["dim"]),
        **map_encoder(model, spec["encoder"]["depth"]),
        **map_decoder(model, spec["decoder"]["depth"]),
        **map_decoder_head(model, legacy),
    }
    if legacy and "pixel_decoder.conv_in.weight" in model:
        codebook = "pixel_quantize.embedding.weight"
        state |= map_vqgan(model, "pixel_decoder.", codebook, "decoder.pixel_decoder.")
    elif legacy:
        codebook = "quantize.embedding.weight"
        state |= map_vqgan(vqgan, "decoder.", codebook, "decoder.pixel_decoder.")
        # The VQGAN file also holds its image encoder, which decoding never uses.
        vqgan.used |= {k for k in vqgan.tensors if k.startswith("encoder.")}
    unmapped = model.unused() + (vqgan.unused() if vqgan is not None else [])
    return Converted(spec, state, unmapped, match_preset(spec, presets))


@register_family
class TiTokFamily(Family):
    """TiTok-L-32 / B-64 / S-128 (through the MaskGIT-VQGAN) and TiTok-BL-64 / BL-128 / SL-256
    (VQ8k). Sources: "model" (the TiTok checkpoint) and, for stage-2 checkpoints without the
    VQGAN inside, "vqgan" (MaskGIT-VQGAN's published weights)."""

    name = "titok"
    sources = ("model", "vqgan")

    def convert(
        self, tensors: dict[str, dict[str, Tensor]], config: dict[str, Any] | None = None
    ) -> Converted:
        model_type = ((config or {}).get("config", config or {}).get("model") or {}).get("type")
        if model_type == "one_d_piece":
            raise ConversionError(
                "model: config.json says model.type 'one_d_piece'; convert it as one_d_piece"
            )
        presets = [n for n in PRESETS if n.startswith("titok_")]
        return convert_titok(self.name, tensors, config, tail_drop=False, presets=presets)
