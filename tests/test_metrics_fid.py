"""rFID / gFID plumbing: FID and KID values, feature extraction, the reference cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_vis.layers import inception as inc
from tokenizers_vis.metrics import fid as fidm


def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) smooth random images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1  # (n 3 4 4)
    return F.interpolate(low, size=size, mode="bicubic").clamp(-1, 1)


class CountingExtractor(nn.Module):
    """Tiny stand-in: a fixed projection of 8x8-pooled uint8 images; counts its calls."""

    def __init__(self, extractor_id: str = "counting-v1") -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 8 * 8, 16)
        nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        self.extractor_id, self.calls = extractor_id, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8
        self.calls += 1
        pooled = F.adaptive_avg_pool2d(images.float() / 255, 8)  # (b 3 8 8)
        return self.proj(pooled.flatten(1))  # (b 16)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISTOK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vistok-cache"))
        try:
            return inc.load_tf_inception()
        except FileNotFoundError as err:
            pytest.fail(f"offline Inception weights missing (run tools/setup.sh): {err}")


@pytest.fixture(scope="module")
def noisy_fids(inception):
    """FID of 8 clean images against themselves and against 3 increasingly noisy copies."""
    clean = _smooth(8, 32, seed=0)
    real = fidm.extract_features([clean], inception, progress=False)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(clean.shape, generator=g)
    out = {0.0: fidm.frechet_distance(real, real)}
    for sigma in (0.05, 0.2, 0.5):
        noisy = (clean + sigma * noise).clamp(-1, 1)
        fake = fidm.extract_features([noisy], inception, progress=False)
        out[sigma] = fidm.frechet_distance(real, fake)
    return out


def test_fid_of_a_set_with_itself_is_zero(noisy_fids):
    assert abs(noisy_fids[0.0]) < 1e-6


def test_fid_grows_with_noise(noisy_fids):
    values = [noisy_fids[s] for s in (0.0, 0.05, 0.2, 0.5)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values


@pytest.mark.parametrize("n_real,n_fake", [(20, 30), (100, 90)])  # svd path, eigh path (d=64)
def test_frechet_distance_matches_torchmetrics(n_real, n_fake):
    from torchmetrics.image.fid import _compute_fid

    g = torch.Generator().manual_seed(n_real)
    real = torch.randn(n_real, 64, generator=g, dtype=torch.float64)
    fake = 1.3 * torch.randn(n_fake, 64, generator=g, dtype=torch.float64) + 0.2
    expected = _compute_fid(real.mean(0), torch.cov(real.T), fake.mean(0), torch.cov(fake.T))
    assert fidm.frechet_distance(real, fake) == pytest.approx(expected.item(), rel=1e-6)


def test_kid_is_deterministic_and_leaves_global_rng_alone():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(40, 16, generator=g), torch.randn(30, 16, generator=g) + 0.5
    state = torch.get_rng_state()
    first = fidm.kernel_inception_distance(real, fake, subsets=5, subset_size=1000, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert first == fidm.kernel_inception_distance(real, fake, subsets=5, seed=3)
    same = fidm.kernel_inception_distance(real, real, subsets=5, seed=3)
    assert abs(same[0]) < first[0]
    out = fidm.fid_kid(real, fake, kid_subsets=5)
    assert set(out) == {"fid", "kid_mean", "kid_std", "num_real", "num_fake"}


def test_extract_features_accepts_loader_batches():
    net = CountingExtractor()
    images = _smooth(6, 16, seed=2)
    from tokenizers_vis.data.transforms import to_uint8

    plain = fidm.extract_features([images[:4], images[4:]], net, progress=False)
    tupled = fidm.extract_features([(images, torch.zeros(6))], net, progress=False)
    dicts = fidm.extract_features([{"image": to_uint8(images)}], net, progress=False)
    assert plain.shape == (6, 16)
    assert torch.allclose(plain, tupled, atol=1e-6) and torch.allclose(plain, dicts, atol=1e-6)


def test_reference_cache_reused_and_invalidated(tmp_path):
    net = CountingExtractor("counting-v1")
    iterated = []

    def batches():
        iterated.append(1)
        yield _smooth(5, 16, seed=3)

    spec = dict(dataset={"name": "emoji", "root": "x"}, split="val", image_size=16, num_images=5)
    first = fidm.reference_features(batches(), net, cache_dir=tmp_path, progress=False, **spec)
    assert net.calls == 1 and len(iterated) == 1
    again = fidm.reference_features(batches(), net, cache_dir=tmp_path, progress=False, **spec)
    assert net.calls == 1 and len(iterated) == 1  # neither the data nor the net was touched
    assert torch.equal(first, again)

    net.extractor_id = "counting-v2"  # e.g. other weights: the old statistics must not be used
    fidm.reference_features(batches(), net, cache_dir=tmp_path, progress=False, **spec)
    assert net.calls == 2 and len(list(tmp_path.glob("*.safetensors"))) == 2

    with pytest.raises(ValueError, match="key says 7"):
        fidm.reference_features(
            batches(), net, cache_dir=tmp_path, progress=False, **{**spec, "num_images": 7}
        )


def test_extractor_id_falls_back_to_weight_digest():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        b.weight.add_(1)
    assert fidm.extractor_id(a) != fidm.extractor_id(b)
    assert fidm.extractor_id(a) == fidm.extractor_id(a)
