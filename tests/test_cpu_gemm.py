"""`cpu_gemm.onednn_linear`: fp32 CPU linears without gradients go to oneDNN and give F.linear's
values; everything else (autograd, autocast, other dtypes) runs exactly as without it."""

from __future__ import annotations

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
