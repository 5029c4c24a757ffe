"""Golden fixtures for FlexTok: run the reference code on seeded random weights, save what it did.

Run with the reference's environment, outside this repository's code (nothing of vistok is
imported here, and nothing of the reference enters vistok):

    PYTHONPATH=/work/refs/ml-flextok /work/refs/.venv/bin/python tools/golden/flextok.py \\
        --reference /work/refs/ml-flextok

writes `tests/fixtures/golden/flextok_tiny.safetensors`: the reference state dict in its own key
names (prefix `model.`), input images (uint8), and the reference's outputs (prefix `out.`); the
metadata holds the hydra-style config the reference was built from (`config`, the structure of the
published `config.json`) and the reference repository + commit. `tests/test_golden_flextok.py`
converts the state dict with `convert/flextok.py` and compares.

`--full-size d12|d18|d28` builds the published sizes instead (random weights, 256 px, the
published VAE architecture) and writes the same kind of file to `--out` for
`tools/golden/flextok_compare.py`; those files are large and never committed.

The reference is configured the way inference needs it: SDPA instead of flex_attention (its own
fallback, selected per attention module), materialised masks, the VAE's posterior mean (not a
sample), fp32. Weights are rounded to fp16-representable values before the run (so the fixture can
store them as fp16 losslessly) and every parameter is perturbed, norms and biases included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

TINY = {
    "image_size": 64,
    "vae": {
        "latent_channels": 4,
        "block_out_channels": [8, 16, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "scaling_factor": 0.75,
    },
    "enc_dim": 64,
    "enc_depth": 2,
    "dec_dim": 64,
    "dec_depth": 2,
    "registers": 8,
    "images": 2,
    "ks": [1, 3, 8],
    "steps": 4,
}
PUBLISHED_VAE = {
    "latent_channels": 16,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "scaling_factor": 0.88,
}
FULL = {  # encoder depth, decoder depth; width = 64 * depth (head_dim 64)
    "d12": (12, 12),
    "d18": (18, 18),
    "d28": (18, 28),
}
LEVELS = [8, 8, 8, 5, 5, 5]
VAE_GROUPS = [32]  # GroupNorm groups of the VAE the reference was built with


def target(name: str, **kwargs: Any) -> dict[str, Any]:
    return {"_target_": name, **kwargs}


M = "flextok.model."
PACKER = M + "preprocessors.flex_seq_packing.BlockWiseSequencePacker"
TO_LAST = {"_target_": M + "utils.dict_ops.channels_first_to_last", "_partial_": True}
TO_FIRST = {"_target_": M + "utils.dict_ops.channels_last_to_first", "_partial_": True}


def encoder_modules(c: int, dim: int, depth: int, n: int, grid: int) -> dict[str, Any]:
    """The encoder's module_dict: VAE latents -> 2x2 patches + sin-cos -> registers -> FSQ dims."""
    m, packer, to_last, enc = M, PACKER, TO_LAST, dim
    return {
        "enc_channels_to_last": target(
            m + "utils.dict_ops.PerSampleOp",
            read_key="vae_latents",
            write_key="vae_latents_bhwc",
            per_sample_op=to_last,
        ),
        "enc_patch_emb": target(
            m + "preprocessors.patching.PatchEmbedder",
            input_tensor_list_read_key="vae_latents_bhwc",
            patches_list_write_key="enc_patches",
            n_patches_write_key="enc_n_patches",
            channels_in=c,
            dim=enc,
            patch_sizes=[2, 2],
            flatten_patches=False,
        ),
        "enc_posemb_module": target(
            m + "utils.posembs.PositionalEmbeddingAdder",
            read_key="enc_patches",
            write_key="enc_patches",
            dim=enc,
            max_sizes=[grid, grid],
            posemb_type="sincos",
            posemb_scaling="absolute",
        ),
        "enc_register_module": target(
            m + "preprocessors.registers.Registers1D",
            input_tensor_list_read_key="enc_patches",
            register_sizes_read_write_key="register_sizes",
            registers_write_key="enc_registers",
            dim=enc,
            n_min=n,
            n_max=n,
        ),
        "enc_seq_packer": target(
            packer,
            input_list_read_keys=["enc_patches", "enc_registers"],
            packed_seq_write_key="enc_packed_seq",
            block_mask_write_key="enc_block_mask",
            inner_packed_shapes_write_key="enc_ps_inner",
            outer_packed_shapes_write_key="enc_ps_outer",
            mask_mode="causal_last",
            pad_to_multiple=128,
            return_materialized_mask=True,
        ),
        "enc_transformer": target(
            m + "trunks.transformers.FlexTransformer",
            input_seq_read_key="enc_packed_seq",
            output_seq_write_key="enc_packed_seq",
            dim=enc,
            depth=depth,
            block_mask_read_key="enc_block_mask",
        ),
        "enc_unpacker": target(
            m + "postprocessors.seq_unpacking.SequenceUnpacker",
            packed_seq_read_key="enc_packed_seq",
            inner_seq_write_keys=["enc_patches", "enc_registers"],
            inner_packed_shapes_read_key="enc_ps_inner",
            outer_packed_shapes_read_key="enc_ps_outer",
        ),
        "enc_to_latents": target(
            m + "postprocessors.heads.LinearHead",
            read_key="enc_registers",
            write_key="enc_registers",
            dim=enc,
            dim_out=len(LEVELS),
            use_mup_readout=False,
        ),
    }


def decoder_modules(c: int, dim: int, depth: int, n: int, grid: int) -> dict[str, Any]:
    """The decoder's module_dict: codes + noisy latents -> velocity, as the published ones are."""
    m, packer, to_last, to_first, dec = M, PACKER, TO_LAST, TO_FIRST, dim
    return {
        "dec_from_latents": target(
            m + "preprocessors.linear.LinearLayer",
            read_key="quants",
            write_key="dec_quants",
            dim_in=len(LEVELS),
            dim=dec,
        ),
        "dec_registers_posemb_module": target(
            m + "utils.posembs.PositionalEmbeddingAdder",
            read_key="dec_quants",
            write_key="dec_quants",
            dim=dec,
            max_sizes=[n],
            posemb_type="learnable_sum",
        ),
        "dec_nested_dropout": target(
            m + "preprocessors.token_dropout.MaskedNestedDropout",
            read_write_key="dec_quants",
            dim=dec,
            size_sampling_mode="pow2",
        ),
        "dec_latent_dropout": target(
            m + "preprocessors.nullcond.LearnedNullCond",
            read_write_key="dec_quants",
            dim=dec,
            dropout_prob=0.2,
        ),
        "dec_noise_channels_to_last": target(
            m + "utils.dict_ops.PerSampleOp",
            read_key="vae_latents_noised",
            write_key="dec_noise_bhwc",
            per_sample_op=to_last,
        ),
        "dec_noise_patch_emb": target(
            m + "preprocessors.patching.PatchEmbedder",
            input_tensor_list_read_key="dec_noise_bhwc",
            patches_list_write_key="dec_patches",
            n_patches_write_key="dec_n_patches",
            channels_in=c,
            dim=dec,
            patch_sizes=[2, 2],
            flatten_patches=False,
        ),
        "dec_patches_posemb_module": target(
            m + "utils.posembs.PositionalEmbeddingAdder",
            read_key="dec_patches",
            write_key="dec_patches",
            dim=dec,
            max_sizes=[grid, grid],
            posemb_type="sincos",
        ),
        "dec_seq_packer": target(
            packer,
            input_list_read_keys=["dec_patches", "dec_quants"],
            packed_seq_write_key="dec_packed_seq",
            block_mask_write_key="dec_block_mask",
            inner_packed_shapes_write_key="dec_ps_inner",
            outer_packed_shapes_write_key="dec_ps_outer",
            emb_packing_fn_write_key="dec_emb_packing_fn",
            mask_mode="full",
            pad_to_multiple=128,
            return_materialized_mask=True,
        ),
        "dec_time_embedder": target(
            m + "preprocessors.time_embedding.TimestepEmbedder",
            timesteps_read_key="timesteps",
            time_embedding_write_key="dec_temb",
            dim=dec,
            max_timestep=1.0,
        ),
        "dec_transformer": target(
            m + "trunks.transformers.FlexTransformer",
            input_seq_read_key="dec_packed_seq",
            output_seq_write_key="dec_packed_seq",
            dim=dec,
            depth=depth,
            block_mask_read_key="dec_block_mask",
            adaLN_emb_read_key="dec_temb",
            adaLN_packing_fn_read_key="dec_emb_packing_fn",
        ),
        "dec_unpacker": target(
            m + "postprocessors.seq_unpacking.SequenceUnpacker",
            packed_seq_read_key="dec_packed_seq",
            inner_seq_write_keys=["dec_patches", "dec_quants"],
            inner_packed_shapes_read_key="dec_ps_inner",
            outer_packed_shapes_read_key="dec_ps_outer",
        ),
        "dec_to_patches": target(
            m + "postprocessors.heads.ToPatchesLinearHead",
            read_key="dec_patches",
            write_key="vae_latents_reconst",
            dim=dec,
            channels_out=c,
            patch_sizes=[2, 2],
            use_mup_readout=False,
            adaLN_emb_read_key="dec_temb",
        ),
        "dec_channels_to_first": target(
            m + "utils.dict_ops.PerSampleOp",
            read_key="vae_latents_reconst",
            write_key="vae_latents_reconst",
            per_sample_op=to_first,
        ),
    }


def config(size: dict[str, Any]) -> dict[str, Any]:
    """A hydra config of the whole FlexTok model, structured as the published ones are."""
    vae = size["vae"]
    c, f = vae["latent_channels"], 2 ** (len(vae["block_out_channels"]) - 1)
    grid = size["image_size"] // f // 2
    n = size["registers"]
    encoder = encoder_modules(c, size["enc_dim"], size["enc_depth"], n, grid)
    decoder = decoder_modules(c, size["dec_dim"], size["dec_depth"], n, grid)
    wrapper = "flextok.model.utils.wrappers.SequentialModuleDictWrapper"
    return {
        "_target_": "flextok.flextok_wrapper.FlexTok",
        "vae": target(
            "flextok.vae_wrapper.StableDiffusionVAE",
            images_read_key="rgb",
            vae_latents_read_key="vae_latents_reconst",
            vae_latents_write_key="vae_latents",
            images_reconst_write_key="rgb_reconst",
            vae_kl_loss_write_key="kl_loss",
            latent_channels=c,
            scaling_factor=vae["scaling_factor"],
            sample_posterior=False,
            frozen=True,
        ),
        "encoder": target(wrapper, module_dict=encoder),
        "decoder": target(wrapper, module_dict=decoder),
        "regularizer": target(
            "flextok.regularizers.quantize_fsq.FSQ",
            latents_read_key="enc_registers",
            quants_write_key="quants",
            tokens_write_key="tokens",
            levels=LEVELS,
        ),
        "flow_matching_noise_module": target(
            "flextok.flow_matching.noise_modules.MinRFNoiseModule",
            clean_images_read_key="vae_latents",
            noised_images_write_key="vae_latents_noised",
            timesteps_write_key="timesteps",
            sigmas_write_key="sigmas",
        ),
        "pipeline": target(
            "flextok.flow_matching.pipelines.MinRFPipeline",
            _partial_=True,
            noise_read_key="noise",
            latents_read_key="quants",
            timesteps_read_key="timesteps",
            noised_images_read_key="vae_latents_noised",
            reconst_write_key="vae_latents_reconst",
            out_channels=c,
        ),
    }


def full_size(name: str, images: int = 1) -> dict[str, Any]:
    """A published size: 256 px, the published VAE architecture, 256 registers."""
    enc_depth, dec_depth = FULL[name]
    return {
        "image_size": 256,
        "vae": PUBLISHED_VAE,
        "enc_dim": 64 * enc_depth,
        "enc_depth": enc_depth,
        "dec_dim": 64 * dec_depth,
        "dec_depth": dec_depth,
        "registers": 256,
        "images": images,
        "ks": [1, 16, 256],
        "steps": 0,
    }


def saved_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config as stored beside the weights, plus the VAE's GroupNorm groups: those come from
    the reference's VAE base config (patched in memory for the tiny VAE), not from the hydra
    config, so they are recorded where the converter reads them."""
    saved = json.loads(json.dumps(cfg))
    saved["vae"]["norm_num_groups"] = VAE_GROUPS[0]
    return saved


def build(size: dict[str, Any], cfg: dict[str, Any], half: bool = True) -> torch.nn.Module:
    """Instantiate the reference, on SDPA, with seeded, perturbed weights (fp16-representable
    when `half`, so the fixture stores them losslessly as fp16)."""
    import flextok.vae_wrapper as vae_wrapper
    from flextok.model.layers.attention import FlexAttention
    from hydra.utils import instantiate

    vae = size["vae"]
    VAE_GROUPS[:] = [vae["norm_num_groups"]]
    vae_wrapper.VAE_BASE_CFG.update(  # the VAE architecture the size asks for (kept in memory)
        block_out_channels=vae["block_out_channels"],
        down_block_types=["DownEncoderBlock2D"] * len(vae["block_out_channels"]),
        up_block_types=["UpDecoderBlock2D"] * len(vae["block_out_channels"]),
        layers_per_block=vae["layers_per_block"],
        norm_num_groups=vae["norm_num_groups"],
    )
    torch.manual_seed(0)
    model = instantiate(cfg).eval()
    for module in model.modules():
        if isinstance(module, FlexAttention):
            module.use_flex_attention = False  # the reference's own SDPA fallback
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("posembs") and not p.requires_grad:
                continue  # fixed sin-cos table, not a weight
            fan_in = p.shape[1] if p.dim() == 2 else max(p[0].numel(), 1) if p.dim() > 2 else 16
            noise = torch.randn(p.shape, generator=generator) * min(0.5, fan_in**-0.5)
            p.add_(noise)
            if half:
                p.copy_(p.half().float())
    return model


def run(model: torch.nn.Module, size: dict[str, Any], seed: int = 2) -> dict[str, torch.Tensor]:
    """The reference's outputs on random images."""
    generator = torch.Generator().manual_seed(seed)
    s, b = size["image_size"], size["images"]
    pixels = torch.randint(0, 256, (b, 3, s, s), generator=generator, dtype=torch.uint8)
    images = pixels.float() / 127.5 - 1.0
    out: dict[str, torch.Tensor] = {"images_uint8": pixels}
    with torch.no_grad():
        data = {"rgb": list(images.split(1))}
        data = model.vae.encode(data)
        out["vae_latents"] = torch.cat(data["vae_latents"])
        data = model.encoder(data)
        out["register_latents"] = torch.cat(data["enc_registers"])
        data = model.regularizer(data)
        out["ids"] = torch.cat(data["tokens"])
        quants = torch.cat(data["quants"])
        out["quants"] = quants
        latents = out["vae_latents"]
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.tensor([0.7, 0.3])[:b] if b <= 2 else torch.rand(b, generator=generator)
        out["noise"], out["t"] = noise, t
        noised = [
            (ti * ni + (1 - ti) * xi)[None] for ti, ni, xi in zip(t, noise, latents, strict=True)
        ]
        out["noised"] = torch.cat(noised)
        for k in size["ks"]:
            velocity = model.decoder(
                {
                    "quants": list(quants.clone().split(1)),
                    "eval_keep_k": [k] * b,
                    "vae_latents_noised": [x.clone() for x in noised],
                    "timesteps": t.clone(),
                }
            )["vae_latents_reconst"]
            out[f"velocity_k{k}"] = torch.cat(velocity)
        null = model.decoder(
            {
                "quants": list(quants.clone().split(1)),
                "eval_dropout_mask": [True] * b,
                "vae_latents_noised": [x.clone() for x in noised],
                "timesteps": t.clone(),
            }
        )["vae_latents_reconst"]
        out["velocity_null"] = torch.cat(null)
        if size.get("steps"):
            k = size["ks"][1]
            start = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
            decoded = model.decode(
                {
                    "quants": list(quants.clone().split(1)),
                    "eval_keep_k": [k] * b,
                    "noise": list(start.split(1)),
                },
                timesteps=size["steps"],
                vae_image_sizes=latents.shape[-1],
                verbose=False,
            )
            out["sample_latents"] = torch.cat(decoded["vae_latents_reconst"])
            out["sample_images"] = torch.cat(decoded["rgb_reconst"])
            out["sample_k"] = torch.tensor(k)
            out["sample_steps"] = torch.tensor(size["steps"])
    return out


def commit(reference: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(reference), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def save(
    model: torch.nn.Module,
    out: dict[str, torch.Tensor],
    cfg: dict[str, Any],
    path: Path,
    reference: Path,
    half: bool,
) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().contiguous()
        tensors[f"model.{key}"] = value.half() if half and value.is_floating_point() else value
    tensors.update({f"out.{key}": value.contiguous() for key, value in out.items()})
    metadata = {
        "config": json.dumps(saved_config(cfg)),
        "reference": "apple/ml-flextok",
        "commit": commit(reference),
        "weights": "fp16-representable random weights (seeded); stored as fp16" if half else "fp32",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--full-size", choices=sorted(FULL))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    # This file is named like the reference package: import the reference, not this script.
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(args.reference)] + [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.modules.pop("flextok", None)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    if args.full_size:
        size = full_size(args.full_size)
        path = args.out or Path(f"/tmp/flextok_{args.full_size}_full.safetensors")
    else:
        size = TINY
        path = args.out or Path("tests/fixtures/golden/flextok_tiny.safetensors")
    cfg = config(size)
    model = build(size, cfg, half=not args.full_size)
    out = run(model, size)
    save(model, out, cfg, path, args.reference, half=not args.full_size)


if __name__ == "__main__":
    main()
