"""FlexTok (Bachmann et al., 2025; apple/ml-flextok): the published checkpoints as vistok presets.

A FlexTok checkpoint (`EPFL-VILAB/flextok_d12_d12_in1k`, `..._d18_d18_in1k`, `..._d18_d28_in1k`,
`..._d18_d28_dfn`) is one safetensors file holding the VAE (`vae.vae.*`, a diffusers
`AutoencoderKL`), the encoder and decoder (`encoder.module_dict.*`, `decoder.module_dict.*`) and no
tensor for the FSQ regularizer. Its `config.json` is a hydra config; we read it as plain data for
the numbers the tensors cannot tell (the VAE's scaling factor, the timestep scale, the FSQ levels,
the nested-dropout distribution) and never instantiate anything named in it.

Differences of layout, all exact re-arrangements: q/k/v projections are fused into timm's `qkv`;
patch projections over channels-last patches `(ph pw c)` become a convolution's `(c ph pw)`; the
gated MLP's `fc1` / `fc3` are timm SwiGLU's `fc1_g` / `fc1_x`; the adaLN-Zero modulation's chunks
(gate, gate, shift, scale, shift, scale) are reordered to ours (shift, scale, gate for attention,
then for the MLP); the fixed sin-cos position tables are checked against ours, not copied; the VAE
encoder is stored twice (the tokenizer's encoder encodes images, the decoder its training targets).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from tokenizers_vis.convert.base import ConversionError, Converted, Family, register_family
from tokenizers_vis.layers.transformer import sincos_2d_positions
from tokenizers_vis.layers.vae import load_autoencoder_kl
from tokenizers_vis.presets import PRESETS, preset_spec
from tokenizers_vis.safe_read import read_json
from tokenizers_vis.tokenizer import Tokenizer

ENC, DEC = "encoder.module_dict.", "decoder.module_dict."
VAE = "vae.vae."
HEAD_DIM = 64  # FlexTransformer's default; the published models keep it
# Published (encoder width, encoder depth, decoder width, decoder depth) -> our preset.
PUBLISHED = {
    (768, 12, 768, 12): "flextok_d12",
    (1152, 18, 1152, 18): "flextok_d18",
    (1152, 18, 1792, 28): "flextok_d28",
}
# FlexBlockAdaLN's chunks are (gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp);
# ours (AdaLNZeroBlock) are (shift1, scale1, gate1, shift2, scale2, gate2).
ADALN_ORDER = [2, 3, 0, 4, 5, 1]
FLEXTOK_SAMPLINGS = ("uniform", "pow2", "uniform_pow2")


class Source:
    """The published tensors, each taken at most once; what is never taken is unmapped."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        # Activation checkpointing wrappers may leave their name inside keys.
        self.tensors = {k.replace("_checkpoint_wrapped_module.", ""): v for k, v in tensors.items()}
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def take(self, key: str) -> Tensor:
        if key not in self.tensors:
            raise ConversionError(f"FlexTok checkpoint lacks {key}")
        self.used.add(key)
        return self.tensors[key]

    def keys(self, prefix: str) -> list[str]:
        return [k for k in self.tensors if k.startswith(prefix)]

    def unmapped(self, source: str) -> list[str]:
        return sorted(f"{source}:{k}" for k in set(self.tensors) - self.used)


def config_value(config: dict[str, Any] | None, path: str, default: Any) -> Any:
    """A value at a dotted path of the published config (module_dict levels included)."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


@register_family
class FlexTokFamily(Family):
    """apple/ml-flextok checkpoints -> `flextok_d12` / `flextok_d18` / `flextok_d28`."""

    name = "flextok"
    sources = ("model",)

    def convert(
        self, tensors: dict[str, dict[str, Tensor]], config: dict[str, Any] | None = None
    ) -> Converted:
        src = Source(tensors["model"])
        tell = [ENC + "enc_register_module.registers", DEC + "dec_from_latents.proj.weight"]
        missing = [k for k in tell if k not in src]
        if missing or not src.keys(VAE):
            raise ConversionError(
                "not a FlexTok checkpoint: it lacks "
                + ", ".join(missing + ([] if src.keys(VAE) else [VAE + "*"]))
                + " (FlexTok holds vae.vae.*, encoder.module_dict.*, decoder.module_dict.*)"
            )
        spec, preset = flextok_spec(src, config)
        state: dict[str, Tensor] = {}
        vae_state = vae_tensors(src)
        for key, value in vae_state["encoder"].items():
            state["encoder.vae." + key] = value
            state["decoder.latent_vae.encoder." + key] = value
        for key, value in vae_state["decoder"].items():
            state["decoder.latent_vae.decoder." + key] = value
        state.update(encoder_tensors(src, spec))
        state.update(decoder_tensors(src, spec))
        return Converted(spec=spec, state=state, unmapped=src.unmapped("model"), preset=preset)


def count_blocks(src: Source, prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in src.keys(prefix)})


def vae_spec(src: Source, config: dict[str, Any] | None) -> dict[str, Any]:
    """`layers.vae` keyword arguments from the VAE's tensor shapes (+ the config's scale)."""
    levels = count_blocks(src, VAE + "encoder.down_blocks.")
    channels = [
        int(src.tensors[f"{VAE}encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0])
        for i in range(levels)
    ]
    layers = count_blocks(src, VAE + "encoder.down_blocks.0.resnets.")
    latent = int(src.tensors[VAE + "quant_conv.weight"].shape[0]) // 2
    scale = config_value(config, "vae.scaling_factor", None)
    if scale is None:
        raise ConversionError(
            "the VAE's scaling factor is only in FlexTok's config.json (vae.scaling_factor): "
            "convert with the config.json that sits beside the checkpoint"
        )
    return {
        "latent_channels": latent,
        "block_out_channels": channels,
        "layers_per_block": layers,
        # GroupNorm groups leave no tensor and published configs do not name them: FlexTok's
        # VAE base config fixes 32 (a config may say otherwise, as the tiny golden fixture does).
        "norm_num_groups": int(config_value(config, "vae.norm_num_groups", 32)),
        "scaling_factor": float(scale),
    }


def flextok_spec(src: Source, config: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """Our tokenizer spec from the shapes, and the preset it equals (None for other sizes)."""
    enc_width, n = (int(d) for d in src.tensors[ENC + "enc_register_module.registers"].shape[::-1])
    dec_width, code_dim = (int(d) for d in src.tensors[DEC + "dec_from_latents.proj.weight"].shape)
    enc_depth = count_blocks(src, ENC + "enc_transformer.blocks.")
    dec_depth = count_blocks(src, DEC + "dec_transformer.blocks.")
    vae = vae_spec(src, config)
    patch_in = int(src.tensors[ENC + "enc_patch_emb.patch_proj.weight"].shape[1])
    patch = round((patch_in / vae["latent_channels"]) ** 0.5)
    grid = int(src.tensors[ENC + "enc_posemb_module.posembs"].shape[-1])
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    levels = config_value(config, "regularizer.levels", [8, 8, 8, 5, 5, 5])
    if len(levels) != code_dim:
        raise ConversionError(f"FSQ levels {levels} do not match the {code_dim}-dim codes")
    for width, depth, where in ((enc_width, enc_depth, ENC), (dec_width, dec_depth, DEC)):
        check_blocks(src, where, width, depth)
    head_dim = config_value(config, "encoder.module_dict.enc_transformer.head_dim", HEAD_DIM)
    preset = PUBLISHED.get((enc_width, enc_depth, dec_width, dec_depth))
    base = copy.deepcopy(PRESETS[preset or "flextok_d12"])
    base["image_size"], base["max_tokens"] = grid * patch * factor, n
    base["quantizer"] = {"name": "fsq", "levels": [int(v) for v in levels]}
    sampling = config_value(
        config, "decoder.module_dict.dec_nested_dropout.size_sampling_mode", "pow2"
    )
    # Training-only; FlexTok's three modes have the same names here ("k=..." lists fall back).
    base["token_drop"]["sampling"] = sampling if sampling in FLEXTOK_SAMPLINGS else "pow2"
    shape = {"patch_size": patch, "vae": vae}
    base["encoder"] |= shape | width_depth(enc_width, enc_depth, head_dim)
    max_timestep = config_value(
        config, "decoder.module_dict.dec_time_embedder.max_timestep", 1000.0
    )
    base["decoder"] |= shape | width_depth(dec_width, dec_depth, head_dim)
    base["decoder"]["time_scale"] = 1000.0 / float(max_timestep)
    dropout = config_value(config, "decoder.module_dict.dec_latent_dropout.dropout_prob", None)
    if dropout is not None:
        base["decoder"]["cond_dropout"] = float(dropout)
    return base, preset


def width_depth(width: int, depth: int, head_dim: int) -> dict[str, int]:
    return {"width": width, "depth": depth, "num_heads": width // head_dim}


def check_blocks(src: Source, where: str, width: int, depth: int) -> None:
    """Refuse block layouts our options do not express (biases, another MLP size, adaLN parts)."""
    block = where + ("enc" if where == ENC else "dec") + "_transformer.blocks.0."
    hidden = int(2 * int(width * 4.0) / 3)
    fc1 = src.tensors.get(block + "mlp.fc1.weight")
    if fc1 is None or tuple(fc1.shape) != (hidden, width) or block + "mlp.fc3.weight" not in src:
        raise ConversionError(f"{block}mlp is not a SwiGLU of hidden size {hidden}")
    ada = src.tensors.get(block + "adaLN_modulation.1.weight")
    if ada is not None and ada.shape[0] != 6 * width:
        raise ConversionError(
            f"{block}adaLN_modulation has {ada.shape[0] // width // 6} parts (per-sequence "
            "modulation); vistok's blocks modulate patches and tokens alike"
        )


def vae_tensors(src: Source) -> dict[str, dict[str, Tensor]]:
    """The VAE's tensors split into our halves (keys under each are AutoencoderKL's own)."""
    halves: dict[str, dict[str, Tensor]] = {"encoder": {}, "decoder": {}}
    for key in src.keys(VAE):
        own = key[len(VAE) :]
        half = "encoder" if own.startswith(("encoder.", "quant_conv.")) else "decoder"
        if not own.startswith(("encoder.", "quant_conv.", "decoder.", "post_quant_conv.")):
            continue  # left unmapped
        halves[half][own] = src.take(key)
    return halves


def patch_conv(weight: Tensor, patch: int) -> Tensor:
    """A linear map over channels-last patches (o, (ph pw c)) -> a conv kernel (o c ph pw)."""
    return rearrange(weight, "o (ph pw c) -> o c ph pw", ph=patch, pw=patch)


def check_sincos(src: Source, key: str, width: int) -> None:
    """The published fixed table (1 d gh gw) must be the one we compute (never copied)."""
    table = src.take(key).float()
    ours = rearrange(
        sincos_2d_positions(table.shape[-1], width), "1 (h w) d -> 1 d h w", h=table.shape[-2]
    )
    if not torch.allclose(table, ours, atol=1e-3):
        raise ConversionError(f"{key} is not the 2D sin-cos table vistok computes")


def block_tensors(src: Source, theirs: str, ours: str, adaln: bool) -> dict[str, Tensor]:
    """One transformer block: fused q/k/v, SwiGLU, optionally the reordered modulation."""
    out = {
        ours + "attn.qkv.weight": torch.cat(
            [src.take(theirs + f"attn.w{x}.weight") for x in "qkv"], dim=0
        ),
        ours + "attn.proj.weight": src.take(theirs + "attn.proj.weight"),
        ours + "mlp.fc1_g.weight": src.take(theirs + "mlp.fc1.weight"),
        ours + "mlp.fc1_x.weight": src.take(theirs + "mlp.fc3.weight"),
        ours + "mlp.fc2.weight": src.take(theirs + "mlp.fc2.weight"),
    }
    if adaln:
        for kind in ("weight", "bias"):
            chunks = src.take(theirs + f"adaLN_modulation.1.{kind}").chunk(6, dim=0)
            out[ours + f"modulation.1.{kind}"] = torch.cat([chunks[i] for i in ADALN_ORDER])
    return out


def encoder_tensors(src: Source, spec: dict[str, Any]) -> dict[str, Tensor]:
    e, patch = spec["encoder"], spec["encoder"]["patch_size"]
    check_sincos(src, ENC + "enc_posemb_module.posembs", e["width"])
    out = {
        "encoder.patch_embed.proj.weight": patch_conv(
            src.take(ENC + "enc_patch_emb.patch_proj.weight"), patch
        ),
        "encoder.patch_embed.proj.bias": src.take(ENC + "enc_patch_emb.patch_proj.bias"),
        "encoder.latent_tokens": src.take(ENC + "enc_register_module.registers")[None],
        "encoder.to_codes.weight": src.take(ENC + "enc_to_latents.proj.weight"),
        "encoder.to_codes.bias": src.take(ENC + "enc_to_latents.proj.bias"),
    }
    for i in range(e["depth"]):
        theirs, ours = ENC + f"enc_transformer.blocks.{i}.", f"encoder.transformer.blocks.{i}."
        out |= block_tensors(src, theirs, ours, adaln=False)
    return out


def decoder_tensors(src: Source, spec: dict[str, Any]) -> dict[str, Tensor]:
    d, patch = spec["decoder"], spec["decoder"]["patch_size"]
    check_sincos(src, DEC + "dec_patches_posemb_module.posembs", d["width"])
    positions = src.take(DEC + "dec_registers_posemb_module.posembs")  # (1 1 w n)
    null_key = DEC + "dec_latent_dropout.nullcond"
    # A zero null condition (FlexTok's ZeroNullCond) has no tensor: our null token is zeros.
    null = src.take(null_key) if null_key in src else torch.zeros(d["width"])
    out = {
        "decoder.patch_embed.proj.weight": patch_conv(
            src.take(DEC + "dec_noise_patch_emb.patch_proj.weight"), patch
        ),
        "decoder.patch_embed.proj.bias": src.take(DEC + "dec_noise_patch_emb.patch_proj.bias"),
        "decoder.token_in.weight": src.take(DEC + "dec_from_latents.proj.weight"),
        "decoder.token_in.bias": src.take(DEC + "dec_from_latents.proj.bias"),
        "decoder.token_positions": rearrange(positions, "1 1 w n -> 1 n w"),
        "decoder.null_token": rearrange(null, "w -> 1 1 w"),
        "decoder.mask_token": rearrange(
            src.take(DEC + "dec_nested_dropout.dropout_mask_token"), "w -> 1 1 w"
        ),
        "decoder.time_embed.linear_1.weight": src.take(DEC + "dec_time_embedder.mlp.0.weight"),
        "decoder.time_embed.linear_1.bias": src.take(DEC + "dec_time_embedder.mlp.0.bias"),
        "decoder.time_embed.linear_2.weight": src.take(DEC + "dec_time_embedder.mlp.2.weight"),
        "decoder.time_embed.linear_2.bias": src.take(DEC + "dec_time_embedder.mlp.2.bias"),
        "decoder.final.modulation.1.weight": src.take(
            DEC + "dec_to_patches.adaLN_modulation.1.weight"
        ),
        "decoder.final.modulation.1.bias": src.take(DEC + "dec_to_patches.adaLN_modulation.1.bias"),
        "decoder.final.linear.weight": src.take(DEC + "dec_to_patches.proj.weight"),
        "decoder.final.linear.bias": src.take(DEC + "dec_to_patches.proj.bias"),
    }
    for i in range(d["depth"]):
        theirs, ours = DEC + f"dec_transformer.blocks.{i}.", f"decoder.blocks.{i}."
        out |= block_tensors(src, theirs, ours, adaln=True)
    return out


def flextok_with_vae(preset: str, vae: str | Path, **overrides: Any) -> Tokenizer:
    """A new FlexTok-architecture tokenizer on a pretrained VAE (e.g. FlexTok's own
    `flextok_vae_c16`, downloaded by the user): `vae` is a local diffusers `AutoencoderKL`
    directory whose config.json gives the architecture and scaling factor and whose weights
    fill all three VAE halves. Encoder, quantizer and decoder start untrained; nothing downloads.

    Args:
        preset: "flextok_d12", "flextok_d18" or "flextok_d28".
        vae: the local AutoencoderKL directory.
        overrides: merged into the preset's spec (e.g. image_size).
    """
    path = Path(vae)
    if not (path / "config.json").is_file():
        raise ConversionError(f"{path} holds no AutoencoderKL config.json")
    config = read_json(path / "config.json", error=ConversionError)
    keys = ("latent_channels", "block_out_channels", "layers_per_block", "norm_num_groups")
    arch = {k: config[k] for k in keys if k in config}
    arch["scaling_factor"] = float(config.get("scaling_factor") or 1.0)
    arch["shift_factor"] = float(config.get("shift_factor") or 0.0)
    for part in ("encoder", "decoder"):
        overrides[part] = {**overrides.get(part, {}), "vae": arch}
    spec = preset_spec(preset, **overrides)
    for part in ("encoder", "decoder"):  # the preset's VAE keys are replaced, not merged
        spec[part]["vae"] = arch
    tokenizer = Tokenizer(**spec)
    for half in (tokenizer.encoder.vae, *tokenizer.decoder.latent_vae.values()):
        load_autoencoder_kl(half, path)
    return tokenizer
