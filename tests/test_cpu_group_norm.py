"""GroupNorm + SiLU in vistok's CPU kernel (tokenizers_vis/cpu_group_norm.py): values against
fp64, in place, where PyTorch runs instead, and the MaskGIT-VQGAN decoder's inference path equal
to its training path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_cpu_attention import require_kernels
from torch import nn

from tokenizers_vis import cpu_kernels
from tokenizers_vis.cpu_group_norm import group_norm_silu
from tokenizers_vis.decoders.maskgit_vqgan import MaskGITVQGANDecoder


@pytest.fixture(scope="module")
def kernel() -> None:
    require_kernels()


def _norm(channels: int, groups: int = 32, affine: bool = True, seed: int = 0) -> nn.GroupNorm:
    torch.manual_seed(seed)
    norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=affine)
    if affine:
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    return norm


def _input(shape: tuple[int, ...], dtype: torch.dtype, mean: float = 0.0, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 3 + mean
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


def _exact(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    w = None if norm.weight is None else norm.weight.double()
    b = None if norm.bias is None else norm.bias.double()
    return F.silu(F.group_norm(x.double(), norm.num_groups, w, b, norm.eps))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape, groups, affine",
    [
        ((1, 32, 1, 2), 32, True),
        ((2, 64, 7, 9), 32, True),
        ((1, 48, 13, 5), 3, False),
        ((2, 128, 33, 31), 32, True),
    ],
)
@pytest.mark.parametrize("mean", [0.0, 50.0])  # 50: a mean far from zero against the spread
def test_values_against_fp64(kernel, dtype, shape, groups, affine, mean) -> None:
    norm = _norm(shape[1], groups, affine)
    x = _input(shape, dtype, mean)
    with torch.no_grad():
        ours = group_norm_silu(norm, x)
        theirs = F.silu(norm(x))  # PyTorch: GroupNorm, then SiLU
    exact = _exact(norm, x)
    assert ours.dtype == dtype and ours.is_contiguous(memory_format=torch.channels_last)
    err = (ours.double() - exact).abs().max().item()
    if dtype == torch.float32:
        assert err < 2e-5
    else:  # one rounding to bf16 where PyTorch rounds twice
        assert err <= (theirs.double() - exact).abs().max().item() + 1e-6


def test_in_place_overwrites_its_input_and_allocates_nothing(kernel) -> None:
    norm = _norm(64)
    x = _input((2, 64, 8, 8), torch.bfloat16)
    with torch.no_grad():
        fresh = group_norm_silu(norm, x)
        out = group_norm_silu(norm, x, inplace=True)
    assert out.data_ptr() == x.data_ptr() and torch.equal(out, fresh)


def test_pytorch_runs_where_the_kernel_does_not_apply(kernel) -> None:
    norm = _norm(64)
    x = _input((2, 64, 6, 6), torch.float32)
    nchw = x.contiguous()
    with torch.no_grad():
        assert torch.equal(group_norm_silu(norm, nchw, inplace=True), F.silu(norm(nchw)))
        odd = _norm(40, groups=8)  # channels not a multiple of 16
        y = _input((1, 40, 4, 4), torch.float32)
        assert torch.equal(group_norm_silu(odd, y), F.silu(odd(y)))
        half = x.half()
        assert torch.equal(group_norm_silu(norm, half), F.silu(norm(half)))
        single = _input((1, 64, 1, 1), torch.float32)  # one value per group: PyTorch refuses
        with pytest.raises(ValueError, match="more than 1 value"):
            group_norm_silu(_norm(64, groups=64), single)
    # With gradients: PyTorch's ops, the input never overwritten, gradients flow.
    leaf = x.clone().requires_grad_()
    out = group_norm_silu(norm, leaf, inplace=True)
    assert torch.equal(leaf.detach(), x)
    out.sum().backward()
    assert leaf.grad is not None and norm.weight.grad is not None


def test_switched_off_or_unbuilt_runs_pytorch(monkeypatch) -> None:
    norm = _norm(32)
    x = _input((1, 32, 4, 4), torch.float32)
    monkeypatch.setenv(cpu_kernels.ENV, "off")
    with torch.no_grad():
        out = group_norm_silu(norm, x, inplace=True)
    assert out.data_ptr() != x.data_ptr()  # PyTorch's GroupNorm allocated; x kept
    assert torch.equal(out, F.silu(norm(x)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vqgan_inference_equals_its_training_path(kernel, dtype) -> None:
    torch.manual_seed(0)
    decoder = MaskGITVQGANDecoder(
        codebook_size=16, code_dim=8, channels=32, channel_mult=(1, 2), num_res_blocks=2
    ).eval()
    for norm in decoder.modules():
        if isinstance(norm, nn.GroupNorm):
            nn.init.normal_(norm.weight, 1.0, 0.3)
            nn.init.normal_(norm.bias, 0.0, 0.3)
    ids = torch.randint(0, 16, (2, 5, 6))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        trained = decoder.decode_ids(ids)  # gradients on: PyTorch's ops, nothing in place
        with torch.no_grad():
            inferred = decoder.decode_ids(ids)
    tolerance = 1e-5 if dtype == torch.float32 else 0.05
    assert (inferred.float() - trained.detach().float()).abs().max() < tolerance
