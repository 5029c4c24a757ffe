"""The one uint8 <-> [-1, 1] conversion, and the augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizers_vis.data.transforms import (
    WorkerGenerator,
    center_crop_resize,
    mix_seed,
    random_crop_flip,
    resize_square,
    to_pil,
    to_tensor,
    to_uint8,
)


def _all_bytes() -> np.ndarray:
    return np.arange(256 * 3, dtype=np.uint8).reshape(16, 16, 3)  # every value 0..255


def test_to_tensor_range_shape_dtype():
    x = to_tensor(_all_bytes())
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0


@pytest.mark.parametrize("kind", ["numpy", "tensor", "pil"])
def test_uint8_round_trip_is_lossless(kind):
    u = _all_bytes()
    src = {"numpy": u, "tensor": torch.from_numpy(u), "pil": Image.fromarray(u)}[kind]
    back = to_uint8(to_tensor(src))  # (3 h w)
    assert back.dtype == torch.uint8
    assert np.array_equal(back.permute(1, 2, 0).numpy(), u)


def test_to_uint8_batch_rounds_and_clamps():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.0, 7.0]).view(1, 1, 1, 6).expand(2, 3, 1, 6)
    u = to_uint8(x)
    assert u.shape == (2, 3, 1, 6)
    assert u[0, 0, 0].tolist() == [0, 0, 128, 255, 255, 255]  # 127.5 rounds to even: 128


def test_to_pil_from_float_and_uint8():
    u = _all_bytes()
    x = to_tensor(u)
    assert np.array_equal(np.asarray(to_pil(x)), u)
    assert np.array_equal(np.asarray(to_pil(to_uint8(x))), u)
    with pytest.raises(ValueError):
        to_pil(x[None])


def test_to_tensor_rejects_wrong_input():
    with pytest.raises(ValueError):
        to_tensor(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        to_tensor(np.zeros((4, 4), np.uint8))


def test_resize_square_pads_with_white():
    im = Image.new("RGB", (20, 10), (0, 0, 0))
    out = np.asarray(resize_square(im, 20))
    assert out.shape == (20, 20, 3)
    assert (out[0] == 255).all() and (out[10] == 0).all()


def test_center_crop_resize_shape():
    assert center_crop_resize(Image.new("RGB", (30, 12)), 8).size == (8, 8)


def test_random_crop_flip_deterministic_and_in_range():
    x = to_tensor(_all_bytes())
    a = random_crop_flip(x, torch.Generator().manual_seed(3), crop_scale=(0.5, 0.8))
    b = random_crop_flip(x, torch.Generator().manual_seed(3), crop_scale=(0.5, 0.8))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= -1 and a.max() <= 1


def test_random_crop_flip_identity_without_crop_or_flip():
    x = to_tensor(_all_bytes())
    y = random_crop_flip(x, torch.Generator().manual_seed(0), crop_scale=(1.0, 1.0), flip=False)
    assert torch.equal(x, y)


def test_mix_seed_stable_and_distinct():
    assert mix_seed(1, "train", 5) == mix_seed(1, "train", 5)
    assert mix_seed(1, "train", 5) != mix_seed(1, "train", 6)
    assert 0 <= mix_seed(0) < 2**63


def test_worker_generator_survives_pickle():
    import pickle

    g = WorkerGenerator(7)
    first = torch.rand(3, generator=g())
    clone = pickle.loads(pickle.dumps(g))
    assert torch.equal(torch.rand(3, generator=clone()), first)  # fresh, same seed


def test_unit_and_pixel_scales_are_differentiable_and_match_uint8() -> None:
    from tokenizers_vis.data.transforms import to_pixel_scale, to_uint8, to_unit

    x = (torch.rand(2, 3, 4, 4) * 2 - 1).requires_grad_()
    assert torch.allclose(to_pixel_scale(x).round().clamp(0, 255).to(torch.uint8).float(),
                          to_uint8(x).float())  # fmt: skip
    assert torch.allclose(to_unit(x) * 255, to_pixel_scale(x), atol=1e-4)
    (to_unit(x).sum() + to_pixel_scale(x).sum()).backward()
    assert torch.allclose(x.grad, torch.full_like(x, 0.5 + 127.5))
