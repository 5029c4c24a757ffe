"""`cpu_gemm.onednn_linear`: fp32 CPU linears without gradients go to oneDNN and give F.linear's
values; everything else (autograd, autocast, other dtypes) runs exactly as without it."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F

import tokenizers_vis.cpu_gemm as cpu_gemm
from tokenizers_vis.cpu_gemm import onednn_available, onednn_linear
from tokenizers_vis.registry import DECODERS, ENCODERS

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN")


@pytest.fixture
def rerouted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Shapes of the inputs that went to oneDNN."""
    seen: list[tuple[int, ...]] = []
    original = cpu_gemm.onednn_matmul

    def counting(x, weight, bias):  # noqa: ANN001, ANN202
        seen.append(tuple(x.shape))
        return original(x, weight, bias)

    monkeypatch.setattr(cpu_gemm, "onednn_matmul", counting)
    return seen


@pytest.mark.parametrize("bias", [True, False])
def test_values_are_f_linear_s(rerouted: list, bias: bool) -> None:
    torch.manual_seed(0)
    x, weight = torch.randn(3, 7, 48), torch.randn(20, 48)
    b = torch.randn(20) if bias else None
    with torch.no_grad(), onednn_linear():
        got = F.linear(x, weight, b)
        strided = F.linear(x[:, ::2], weight, b)  # a non-contiguous input
    assert rerouted == [(3, 7, 48), (3, 4, 48)]
    torch.testing.assert_close(got, F.linear(x, weight, b), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(strided, F.linear(x[:, ::2], weight, b), rtol=1e-5, atol=1e-5)


def test_autograd_autocast_and_other_dtypes_are_left_alone(rerouted: list) -> None:
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    with onednn_linear():
        out = layer(x)  # the weights need gradients: not rerouted
        out.sum().backward()
        with torch.no_grad():
            double = F.linear(x.double(), layer.weight.double())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = layer(x)
    with torch.no_grad(), onednn_linear(enabled=False):
        disabled = layer(x)
    assert rerouted == []
    assert layer.weight.grad is not None and half.dtype == torch.bfloat16
    assert double.dtype == torch.float64 and torch.equal(disabled, layer(x).detach())
    assert torch.equal(out.detach(), layer(x).detach())


def test_tokenizer_parts_agree_inside_and_outside() -> None:
    torch.manual_seed(0)
    spec = {"name": "vit_1d", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 4}
    enc = ENCODERS.build(spec, image_size=16, num_tokens=5, out_dim=6).eval()
    dec = DECODERS.build(spec, image_size=16, num_tokens=5, in_dim=6).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.inference_mode():
        plain = dec(enc(images)).images
        with onednn_linear():
            fast = dec(enc(images)).images
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def _tiny_tokenizer():
    from tokenizers_vis.tokenizer import Tokenizer

    torch.manual_seed(0)
    spec = {"name": "vit_1d", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 4}
    return Tokenizer(16, 5, spec, {"name": "fsq", "levels": [5, 5, 5]}, spec).eval()


def test_weight_cache_gives_autocast_s_values_and_casts_once(monkeypatch) -> None:
    # Attention (fp32, or vistok's bf16 kernel) is a separate, value-changing choice (tested
    # below and in test_cpu_attention.py): off here, so the weight cache alone must give
    # autocast's very bits.
    monkeypatch.setattr(cpu_gemm, "_attention", lambda *_: None)
    tok = _tiny_tokenizer()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain_ids = tok.quantizer(tok.encoder(images)).ids  # autocast alone
        plain = tok.decode_codes(tok.quantizer.ids_to_codes(plain_ids), torch.tensor([5, 5]))
    cpu_gemm.clear_weight_cache()
    made: list[tuple[int, object]] = []
    original = cpu_gemm._cached

    def counting(weight, form, make):  # noqa: ANN001, ANN202
        def counted(w):  # noqa: ANN001, ANN202
            made.append((id(weight), form))
            return make(w)

        return original(weight, form, counted)

    monkeypatch.setattr(cpu_gemm, "_cached", counting)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = tok.encode(images).ids
        made_once = list(made)
        again = tok.encode(images).ids
        pixels = tok.decode(again)
    assert torch.equal(first, plain_ids) and torch.equal(again, plain_ids)
    torch.testing.assert_close(pixels, plain, rtol=0, atol=0)  # bit-identical
    assert made_once and len(set(made_once)) == len(made_once)  # each weight's form made once ...
    encoder_weights = {id(p) for p in tok.encoder.parameters()}
    assert all(key[0] not in encoder_weights for key in made[len(made_once) :])  # ... then reused
    if cpu_gemm._packs(torch.bfloat16):  # linears take oneDNN's packed layout
        assert any(form == ("packed", torch.bfloat16) for _, form in made_once)


def test_weight_cache_follows_weight_updates_and_parameter_lifetime() -> None:
    cpu_gemm.clear_weight_cache()
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with cpu_gemm.inference_gemms():
            before = layer(x)
        layer.weight.mul_(2)  # an in-place update bumps the version: the copy is stale
        with cpu_gemm.inference_gemms():
            after = layer(x)
        expected = layer(x)  # plain autocast
    assert torch.equal(after, expected) and not torch.equal(after, before)
    assert len(cpu_gemm._CACHE) == 2  # the weight (packed) and the bias (cast)
    del layer
    gc.collect()  # whatever else of the suite may hold the layer in a cycle: the cache does not
    assert len(cpu_gemm._CACHE) == 0  # freed with its parameter


def test_weight_cache_is_off_for_mkl_fp32_and_with_gradients() -> None:
    cpu_gemm.clear_weight_cache()
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with cpu_gemm.cpu_linear("mkl"), cpu_gemm.inference_gemms(), torch.no_grad():
        layer(x)  # fp32 on MKL: nothing to cast or pack
    with torch.autocast("cpu", dtype=torch.bfloat16), cpu_gemm.inference_gemms():
        layer(x).sum().backward()  # gradients: autocast's own casts, nothing kept
    assert len(cpu_gemm._CACHE) == 0 and layer.weight.grad is not None


def test_fp32_onednn_packs_weights_once_with_unpacked_values(rerouted: list) -> None:
    cpu_gemm.clear_weight_cache()
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 20)
    x = torch.randn(3, 7, 48)
    with torch.no_grad():
        unpacked = cpu_gemm.onednn_matmul(x, layer.weight, layer.bias)
        with cpu_gemm.cpu_linear("onednn"), cpu_gemm.inference_gemms():
            first, again = layer(x), layer(x)
    assert torch.equal(first, unpacked) and torch.equal(again, unpacked)
    forms = cpu_gemm._CACHE[id(layer.weight)][2]
    assert list(forms) == [("packed", torch.float32)]
    assert len(rerouted) == 3  # the reference call and the two packed ones


def test_linear_library_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenizers_vis.errors import VistokError

    monkeypatch.setattr(cpu_gemm, "_cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.delenv(cpu_gemm.ENV, raising=False)
    assert cpu_gemm.linear_library() == "onednn"  # MKL's slow path on AMD
    monkeypatch.setattr(cpu_gemm, "_cpu_vendor", lambda: "GenuineIntel")
    assert cpu_gemm.linear_library() == "mkl"
    monkeypatch.setenv(cpu_gemm.ENV, "ONEDNN")
    assert cpu_gemm.linear_library() == "onednn"
    with cpu_gemm.cpu_linear("mkl"):  # a block's choice wins over the environment
        assert cpu_gemm.linear_library() == "mkl"
    monkeypatch.setenv(cpu_gemm.ENV, "blas")
    with pytest.raises(VistokError, match="VISTOK_CPU_LINEAR='blas': expected one of auto"):
        cpu_gemm.linear_library()
    with pytest.raises(ValueError, match="library must be one of"):
        with cpu_gemm.cpu_linear("blas"):
            pass


@pytest.mark.parametrize("library", ["onednn", "mkl"])
def test_tokenizer_follows_the_policy(rerouted: list, library: str) -> None:
    tok = _tiny_tokenizer()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        plain_ids = tok.quantizer(tok.encoder(images)).ids  # MKL: outside inference_gemms
    with cpu_gemm.cpu_linear(library):
        ids = tok.encode(images).ids
        pixels = tok.decode(ids)
    assert bool(rerouted) == (library == "onednn")
    assert torch.equal(ids, plain_ids)
    with cpu_gemm.cpu_linear("mkl"):
        torch.testing.assert_close(pixels, tok.decode(ids), rtol=0, atol=1e-5)


def _attention_inputs(dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, ...]:
    """q, k, v (2 3 9 8) split from one fused projection output, as timm's Attention does."""
    torch.manual_seed(0)
    qkv = (torch.randn(2, 9, 3 * 3 * 8) * 2).to(dtype)  # (b l 3*h*e), peaked attention
    return tuple(qkv.reshape(2, 9, 3, 3, 8).permute(2, 0, 3, 1, 4))  # 3 x (b h l e)


def test_attention_runs_in_fp32_under_autocast() -> None:
    q, k, v = _attention_inputs()
    mask = torch.rand(9, 9) > 0.3
    mask[:, 0] = True  # every query sees something
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        with cpu_gemm.inference_gemms():
            ours = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    assert plain.dtype == torch.bfloat16 and ours.dtype == torch.float32
    assert torch.equal(ours, expected)  # the same kernel on the upcast inputs
    # More accurate than autocast's own low-precision attention, not just different.
    assert (ours.double() - exact).abs().max() < (plain.double() - exact).abs().max() / 10


def test_attention_float_mask_and_untouched_cases() -> None:
    q, k, v = _attention_inputs()
    bias = torch.randn(9, 9).bfloat16()  # an additive mask in the low precision
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), cpu_gemm.inference_gemms():
        ours = F.scaled_dot_product_attention(q, k, v, bias)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), bias.float())
    assert torch.equal(ours, expected)
    with torch.no_grad(), cpu_gemm.inference_gemms():  # no autocast: the caller's dtype stays
        assert F.scaled_dot_product_attention(q, k, v).dtype == torch.bfloat16
    leaf = q.detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16), cpu_gemm.inference_gemms():
        out = F.scaled_dot_product_attention(leaf, k, v)  # gradients: autocast's own path
    assert out.dtype == torch.bfloat16 and out.requires_grad


def test_views_of_one_projection_are_upcast_in_one_pass() -> None:
    q, k, v = _attention_inputs()
    separate = (torch.randn(4, 5).bfloat16(), torch.randn(6).bfloat16()[::2])
    out = cpu_gemm._upcast_views((q, k, v, *separate))
    for a, b in zip(out, (q, k, v, *separate), strict=True):
        assert a.dtype == torch.float32 and a.shape == b.shape and torch.equal(a, b.float())
    # q, k and v were read from one fp32 copy of their shared storage.
    assert len({t.untyped_storage().data_ptr() for t in out[:3]}) == 1


def test_linear_slice_packs_the_slice_once() -> None:
    cpu_gemm.clear_weight_cache()
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 24)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        fp32 = cpu_gemm.linear_slice(x, layer, 8, 20)  # outside: a plain sliced F.linear
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = F.linear(x, layer.weight[8:20], layer.bias[8:20])
            with cpu_gemm.inference_gemms():
                first = cpu_gemm.linear_slice(x, layer, 8, 20)
                again = cpu_gemm.linear_slice(x, layer, 8, 20)
    torch.testing.assert_close(fp32, F.linear(x, layer.weight, layer.bias)[..., 8:20])
    assert torch.equal(first, again)
    torch.testing.assert_close(first, plain, rtol=0, atol=0)  # autocast's own values
    if cpu_gemm._packs(torch.bfloat16):
        forms = cpu_gemm._CACHE[id(layer.weight)][2]
        assert list(forms) == [("packed", torch.bfloat16, 8, 20)]


def test_derived_weight_is_kept_only_inside_inference_and_follows_updates() -> None:
    cpu_gemm.clear_weight_cache()
    weight = torch.nn.Parameter(torch.randn(4, 3))
    calls: list[torch.dtype] = []

    def make(w: torch.Tensor) -> torch.Tensor:
        calls.append(w.dtype)
        return w * 2

    with torch.no_grad():
        outside = [cpu_gemm.derived_weight(weight, "double", make) for _ in range(2)]
        with cpu_gemm.inference_gemms():
            inside = [cpu_gemm.derived_weight(weight, "double", make) for _ in range(2)]
            with torch.autocast("cpu", dtype=torch.bfloat16), cpu_gemm.inference_gemms():
                low = cpu_gemm.derived_weight(weight, "double", make)
            weight.mul_(3)  # a new version: made again
            updated = cpu_gemm.derived_weight(weight, "double", make)
    with cpu_gemm.inference_gemms():  # gradients on: never kept
        grad = cpu_gemm.derived_weight(weight, "double", make)
    assert len(calls) == 2 + 1 + 1 + 1 + 1  # outside twice, inside once, bf16, update, gradients
    assert inside[0] is inside[1] and outside[0] is not outside[1]
    assert low.dtype == torch.bfloat16 and torch.equal(low, (inside[0]).bfloat16())
    torch.testing.assert_close(updated, weight.detach() * 2)
    assert grad.requires_grad


def test_upsample_kernel_is_folded_once_with_autocast_s_values(monkeypatch) -> None:
    from tokenizers_vis.decoders import maskgit_vqgan

    cpu_gemm.clear_weight_cache()
    folds: list[int] = []
    fold = maskgit_vqgan._fold_nearest_x2
    monkeypatch.setattr(maskgit_vqgan, "_fold_nearest_x2", lambda w: folds.append(1) or fold(w))
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = maskgit_vqgan.upsample_conv(x, conv)  # autocast casts the fold on each call
        with cpu_gemm.inference_gemms():
            first = maskgit_vqgan.upsample_conv(x, conv)
            again = maskgit_vqgan.upsample_conv(x, conv)
    assert len(folds) == 2  # once outside, once for both calls inside
    assert torch.equal(first, again)
    torch.testing.assert_close(first, plain, rtol=0, atol=0)  # autocast's own values


def test_linear_gelu_fuses_only_in_fp32_onednn_inference() -> None:
    from timm.layers import Mlp

    from tokenizers_vis.layers.transformer import GeluMlp

    torch.manual_seed(0)
    mlp = GeluMlp(64, 256)
    assert list(mlp.state_dict()) == list(Mlp(64, 256).state_dict())  # timm's layout
    x = torch.randn(2, 9, 64) * 3
    with torch.no_grad():
        two_ops = mlp.fc2(F.gelu(mlp.fc1(x)))
        assert cpu_gemm.linear_gelu(x, mlp.fc1) is None  # outside inference_gemms
        with cpu_gemm.cpu_linear("onednn"), cpu_gemm.inference_gemms():
            fused = cpu_gemm.linear_gelu(x, mlp.fc1)
            whole = mlp(x)
            with torch.autocast("cpu", dtype=torch.bfloat16), cpu_gemm.inference_gemms():
                assert cpu_gemm.linear_gelu(x, mlp.fc1) is None  # bf16 rounds once if fused
        with cpu_gemm.cpu_linear("mkl"), cpu_gemm.inference_gemms():
            assert cpu_gemm.linear_gelu(x, mlp.fc1) is None
    reference = F.gelu(cpu_gemm.onednn_matmul(x, mlp.fc1.weight, mlp.fc1.bias))
    assert fused is not None
    assert ((fused - reference).abs() <= 1e-6 * reference.abs() + 1e-7).all()
    assert torch.allclose(whole, two_ops, rtol=1e-5, atol=1e-6)
    with cpu_gemm.cpu_linear("onednn"), cpu_gemm.inference_gemms():
        assert cpu_gemm.linear_gelu(x, mlp.fc1) is None  # gradients: PyTorch's two ops
