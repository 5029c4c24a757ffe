"""vistok's CPU bf16 attention kernel (tokenizers_vis/cpu_attention.py): values against fp64,
what it refuses, how `inference_gemms` routes to it, and the fallback when the kernels cannot be
built (tokenizers_vis/cpu_kernels.py).

The kernels need x86 with AVX512-BF16 and a C++ compiler; on other machines the tests of their
values skip (the fallback tests run everywhere)."""

from __future__ import annotations

import os
import platform
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F

import tokenizers_vis.cpu_gemm as cpu_gemm
from tokenizers_vis import cpu_attention, cpu_kernels


@pytest.fixture(scope="module")
def kernel() -> None:
    """Skips only where the kernels cannot run (no AVX512-BF16, no C++ compiler, switched off);
    where they should build and do not, that is a failure, not a skip."""
    require_kernels()


def require_kernels() -> None:
    if platform.machine().lower() not in ("x86_64", "amd64") or (
        "avx512_bf16" not in cpu_kernels.cpu_flags()
    ):
        pytest.skip("the kernels need an x86 CPU with AVX512-BF16")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("the kernels are compiled on first use and no C++ compiler is installed")
    if not cpu_kernels.enabled():
        pytest.skip(f"{cpu_kernels.ENV} switches the kernels off")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = cpu_kernels.available()
    if not built:
        pytest.fail(f"the kernels did not build here: {[str(w.message) for w in caught]}")


def _qkv(b: int, h: int, n: int, m: int, spread: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(b, h, n, 64, generator=g) * spread).bfloat16()
    k = (torch.randn(b, h, m, 64, generator=g) * spread).bfloat16()
    v = torch.randn(b, h, m, 64, generator=g).bfloat16()
    return q, k, v


@pytest.mark.parametrize(
    "shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 2, 49, 50), (1, 1, 17, 96), (2, 4, 64, 97)]
)
@pytest.mark.parametrize("spread", [1.0, 3.0])  # 3: peaked attention
def test_closer_to_fp64_than_pytorch_s_bf16_kernel(kernel, shape, spread) -> None:
    q, k, v = _qkv(*shape, spread)
    ours = cpu_attention.attention(q, k, v)
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    theirs = F.scaled_dot_product_attention(q, k, v)  # PyTorch's bf16 flash kernel
    assert ours.shape == exact.shape and ours.dtype == torch.float32
    ours_err = (ours.double() - exact).abs().max()
    assert ours_err <= (theirs.double() - exact).abs().max() + 1e-6
    assert ours_err < 5e-3 * spread


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 2, 49, 50), (2, 4, 64, 97)])
@pytest.mark.parametrize("spread", [1.0, 3.0])
def test_fp32_is_as_close_to_fp64_as_pytorch_s_fp32_kernel(kernel, shape, spread) -> None:
    q, k, v = (t.float() for t in _qkv(*shape, spread))
    ours = cpu_attention.attention(q, k, v)
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    theirs = F.scaled_dot_product_attention(q, k, v)
    assert ours.dtype == torch.float32
    ours_err = (ours.double() - exact).abs().max().item()
    assert ours_err <= 4 * (theirs.double() - exact).abs().max().item() + 1e-6
    assert ours_err < 2e-5


def test_fp32_runs_here_where_fp32_linears_run_on_onednn() -> None:
    require_kernels()
    q, k, v = (t.float() for t in _qkv(2, 2, 9, 9, 2.0))
    keys = torch.tensor([[True] * 6 + [False] * 3, [True] * 9]).reshape(2, 1, 1, 9)
    direct = cpu_attention.attention(q, k, v, attn_mask=keys)
    with torch.no_grad():
        with cpu_gemm.cpu_linear("onednn"), cpu_gemm.inference_gemms():
            routed = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
        with cpu_gemm.cpu_linear("mkl"), cpu_gemm.inference_gemms():
            untouched = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
    assert torch.equal(routed, direct)
    assert torch.equal(untouched, F.scaled_dot_product_attention(q, k, v, attn_mask=keys))
    with cpu_gemm.cpu_linear("onednn"), cpu_gemm.inference_gemms():  # gradients on: PyTorch's
        leaf = q.clone().requires_grad_()
        out = F.scaled_dot_product_attention(leaf, k, v)
    assert out.requires_grad


def test_scale_and_strided_views_of_one_projection(kernel) -> None:
    g = torch.Generator().manual_seed(1)
    qkv = (torch.randn(2, 33, 3 * 2 * 64, generator=g) * 2).bfloat16()  # (b l 3*h*e)
    q, k, v = qkv.reshape(2, 33, 3, 2, 64).permute(2, 0, 3, 1, 4)  # 3 x (b h l e), strided
    views = cpu_attention.attention(q, k, v, scale=0.05)
    dense = cpu_attention.attention(q.contiguous(), k.contiguous(), v.contiguous(), scale=0.05)
    assert torch.equal(views, dense)
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), scale=0.05)
    assert (views.double() - exact).abs().max() < 5e-3
    # The output is a (b h l e) view of a (b l h e) tensor: back to tokens without a copy.
    assert views.transpose(1, 2).is_contiguous()


@pytest.mark.parametrize("mask_shape", [(2, 1, 1, 70), (1, 1, 70), (1, 70)])
def test_key_mask_leaves_masked_keys_out(kernel, mask_shape) -> None:
    q, k, v = _qkv(2, 3, 11, 70, 2.0, seed=3)
    g = torch.Generator().manual_seed(4)
    mask = torch.rand(mask_shape, generator=g) < 0.6
    mask[..., 0] = True
    ours = cpu_attention.attention(q, k, v, attn_mask=mask)
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    err = (ours.double() - exact).abs().max()
    assert err <= (theirs.double() - exact).abs().max() + 1e-6 and err < 1e-2
    # Leaving keys out equals attending over only those keys: the same packed values.
    if len(mask_shape) == 2:
        keep = mask[0].nonzero()[:, 0]
        assert torch.equal(ours, cpu_attention.attention(q, k[:, :, keep], v[:, :, keep]))


def test_fp32_key_mask_leaves_masked_keys_out(kernel) -> None:
    # TiTok's decoder passes a key mask in fp32 inference too (its own value packing in fp32).
    q, k, v = (t.float() for t in _qkv(2, 3, 11, 70, 2.0, seed=5))
    mask = torch.rand(2, 1, 1, 70, generator=torch.Generator().manual_seed(6)) < 0.6
    mask[..., 0] = True
    ours = cpu_attention.attention(q, k, v, attn_mask=mask)
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    err = (ours.double() - exact).abs().max()
    assert err <= 2 * (theirs.double() - exact).abs().max() + 1e-7 and err < 1e-5
    for i in range(2):  # leaving keys out equals attending over only those keys
        keep = mask[i, 0, 0].nonzero()[:, 0]
        alone = cpu_attention.attention(q[i : i + 1], k[i : i + 1, :, keep], v[i : i + 1, :, keep])
        assert torch.equal(ours[i : i + 1], alone)


def test_key_mask_with_no_visible_key_gives_zeros_like_pytorch(kernel) -> None:
    q, k, v = _qkv(2, 2, 5, 9, 1.0)
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1] = False  # the second image sees nothing
    ours = cpu_attention.attention(q, k, v, attn_mask=mask)
    assert torch.equal(ours[1], torch.zeros_like(ours[1]))
    assert torch.equal(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[1].float(), ours[1])
    assert torch.equal(ours[0], cpu_attention.attention(q[:1], k[:1], v[:1])[0])


def test_refuses_what_it_does_not_compute(kernel) -> None:
    q, k, v = _qkv(1, 2, 6, 6, 1.0)
    assert cpu_attention.attention(q.half(), k.half(), v.half()) is None  # neither bf16 nor fp32
    assert cpu_attention.attention(q.float(), k, v) is None  # mixed dtypes
    q32, k32, v32 = (t[..., :32].contiguous() for t in (q, k, v))
    assert cpu_attention.attention(q32, k32, v32) is None  # head size 32
    odd = torch.empty(1 + q.numel(), dtype=torch.bfloat16)[1:].view(q.shape).copy_(q)
    assert cpu_attention.attention(odd, k, v) is None  # bf16 pairs not 32-bit aligned
    assert cpu_attention.attention(q, k[:, :, :3], v) is None  # keys and values disagree
    assert cpu_attention.attention(q, k, v, scale=-1.0) is None
    leaf = q.detach().requires_grad_()
    assert cpu_attention.attention(leaf, k, v) is None  # gradients: PyTorch's own path
    per_query = torch.ones(6, 6, dtype=torch.bool).tril()
    assert cpu_attention.attention(q, k, v, attn_mask=per_query) is None  # not a key mask
    per_head = torch.ones(1, 2, 1, 6, dtype=torch.bool)
    assert cpu_attention.attention(q, k, v, attn_mask=per_head) is None
    additive = torch.zeros(1, 1, 1, 6)
    assert cpu_attention.attention(q, k, v, attn_mask=additive) is None  # float: fp32 path
    assert cpu_attention.attention(q, k, v, attn_mask=torch.ones(3, 1, 1, 6).bool()) is None


def test_inference_gemms_routes_plain_bf16_attention_here(kernel, monkeypatch) -> None:
    q, k, v = _qkv(2, 2, 9, 9, 2.0)
    mask = torch.ones(9, 9, dtype=torch.bool).tril()
    keys = torch.tensor([[True] * 6 + [False] * 3, [True] * 9]).reshape(2, 1, 1, 9)
    direct = cpu_attention.attention(q, k, v)
    direct_keys = cpu_attention.attention(q, k, v, attn_mask=keys)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), cpu_gemm.inference_gemms():
        plain = F.scaled_dot_product_attention(q, k, v)
        key_masked = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
        masked = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        causal = F.scaled_dot_product_attention(q, k, v, None, 0.0, True)
        monkeypatch.setenv(cpu_kernels.ENV, "off")
        switched_off = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(plain, direct)
    assert direct_keys is not None and torch.equal(key_masked, direct_keys)
    upcast = [t.float() for t in (q, k, v)]
    assert torch.equal(masked, F.scaled_dot_product_attention(*upcast, attn_mask=mask))
    assert torch.equal(causal, F.scaled_dot_product_attention(*upcast, is_causal=True))
    assert torch.equal(switched_off, F.scaled_dot_product_attention(*upcast))  # fp32 path


def test_no_kernel_without_the_instructions_or_when_the_build_fails(monkeypatch) -> None:
    monkeypatch.setattr(cpu_kernels, "cpu_flags", lambda: {"avx2", "fma"})
    cpu_kernels._build.cache_clear()
    try:
        assert not cpu_kernels.available()
        q, k, v = _qkv(1, 1, 4, 4, 1.0)
        assert cpu_attention.attention(q, k, v) is None
        monkeypatch.setattr(cpu_kernels, "cpu_flags", lambda: {"avx512_bf16"})
        monkeypatch.setattr(cpu_kernels.platform, "machine", lambda: "x86_64")

        def no_compiler(**_: object) -> None:
            raise RuntimeError("Error building extension: c++: not found")

        monkeypatch.setattr("torch.utils.cpp_extension.load", no_compiler)
        cpu_kernels._build.cache_clear()
        with pytest.warns(UserWarning, match="PyTorch's own kernels run instead"):
            assert not cpu_kernels.available()
        assert not cpu_kernels.available()  # warned once, not tried again
        assert cpu_attention.attention(q, k, v) is None
    finally:
        monkeypatch.undo()
        cpu_kernels._build.cache_clear()
