"""WebDataset shards: lossless pack -> stream round trip, atomic shards, bad input, streaming."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from test_data_badinput import write_bad_files, write_unusual_files

from tokenizers_vis.data.folder import FolderDataset
from tokenizers_vis.data.shards import ShardDataset, pack_dataset, shard_urls
from tokenizers_vis.data.transforms import BadImageError, to_uint8


class Toy(torch.utils.data.Dataset):
    """n random 8x8 images, label i % 3; optionally one bad item and one crashing item."""

    class_names = ["a", "b", "c"]

    def __init__(self, n: int = 10, bad: int | None = None, crash: int | None = None):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        self.bad, self.crash = bad, crash

    def __len__(self) -> int:
        return len(self.images)

    def record(self, i: int):
        if i == self.bad:
            raise BadImageError("unreadable: toy")
        if i == self.crash:
            raise RuntimeError("simulated crash")
        return self.images[i], i % 3, {"name": f"toy{i}", "split": "train"}


def _read_all(urls) -> dict[int, tuple[torch.Tensor, int]]:
    ds = ShardDataset(urls)
    out = {}
    for rec in ds.records():
        out[int(rec[2]["key"])] = (rec[0], rec[1])
    return out


def test_pack_stream_round_trip_is_lossless(tmp_path):
    toy = Toy(10)
    summary = pack_dataset(toy, tmp_path, "train", shard_size=4, progress=False)
    assert summary.written == 10 and list(summary.shards) == [
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar",
    ]
    assert list(summary.shards.values()) == [4, 4, 2]
    stream = ShardDataset(tmp_path, split="train")
    assert stream.class_names == ["a", "b", "c"] and stream.count == 10
    records = _read_all(tmp_path)
    assert sorted(records) == list(range(10))
    for i, (image, label) in records.items():
        assert np.array_equal(image, toy.images[i]) and label == i % 3
    pixels = {}
    for x, y in stream:
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
        pixels.setdefault(y, []).append(to_uint8(x).permute(1, 2, 0).numpy())
    got = sorted(a.tobytes() for v in pixels.values() for a in v)
    assert got == sorted(im.tobytes() for im in toy.images)  # identical after uint8


def test_shard_members_and_metadata(tmp_path):
    pack_dataset(Toy(3), tmp_path, "val", shard_size=10, progress=False, seed=None)
    with tarfile.open(tmp_path / "val-000000.tar") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("00000001.json").read())
        assert tar.extractfile("00000001.cls").read() == b"1"
    assert names[:3] == ["00000000.cls", "00000000.json", "00000000.png"]
    assert meta["name"] == "toy1" and meta["size"] == [8, 8] and meta["split"] == "train"
    info = json.loads((tmp_path / "val.json").read_text())
    assert info["count"] == 3 and info["size"] == 8 and info["shards"] == {"val-000000.tar": 3}


def test_pack_is_reproducible(tmp_path):
    pack_dataset(Toy(6), tmp_path / "a", "train", 4, progress=False)
    pack_dataset(Toy(6), tmp_path / "b", "train", 4, progress=False)
    for name in ("train-000000.tar", "train-000001.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_samples_are_skipped_and_counted(tmp_path):
    summary = pack_dataset(Toy(6, bad=2), tmp_path, "train", 4, progress=False)
    assert summary.written == 5 and summary.skipped == {"unreadable": 1}
    assert 2 not in _read_all(tmp_path)


def test_crash_leaves_no_partial_shard(tmp_path):
    toy = Toy(10, crash=7)
    with pytest.raises(RuntimeError, match="simulated"):
        pack_dataset(toy, tmp_path, "train", shard_size=3, progress=False, seed=None)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["train-000000.tar", "train-000001.tar"]  # 0-5 complete; 6 was in flight
    assert sorted(_read_all(tmp_path)) == list(range(6))


def test_stale_temp_removed_and_existing_shards_protected(tmp_path):
    (tmp_path / "train-000000.tar.tmp").write_bytes(b"half a shard")
    pack_dataset(Toy(2), tmp_path, "train", 4, progress=False)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(FileExistsError, match="overwrite"):
        pack_dataset(Toy(2), tmp_path, "train", 4, progress=False)
    pack_dataset(Toy(5), tmp_path, "train", 4, overwrite=True, progress=False)
    assert ShardDataset(tmp_path, split="train").count == 5


def test_pack_folder_with_every_kind_of_bad_input(tmp_path):
    write_bad_files(tmp_path / "src" / "bad")
    write_unusual_files(tmp_path / "src" / "odd")
    with pytest.warns(UserWarning):
        ds = FolderDataset(tmp_path / "src", "all", 8)
    summary = pack_dataset(ds, tmp_path / "out", "all", 4, progress=False)
    assert summary.written == 6  # 16-bit, palette, CMYK, RGBA, LA, gray
    assert summary.skipped == {"unreadable or truncated": 2}  # truncated JPEG and PNG
    assert summary.written + summary.skipped.total() + ds.skipped.total() == 11
    names = {rec[2]["name"] for rec in ShardDataset(tmp_path / "out").records()}
    assert names == {
        f"odd/{n}"
        for n in ("gray16.png", "palette.png", "cmyk.jpg", "rgba.png", "la.png", "gray.png")
    }


def test_resampled_stream_is_seeded_and_endless(tmp_path):
    pack_dataset(Toy(12), tmp_path, "train", 3, progress=False)

    def labels(seed):
        ds = ShardDataset(
            tmp_path, split="train", resampled=True, shuffle_buffer=5, seed=seed, epoch_samples=40
        )
        return [y for _, y in ds]

    assert len(labels(0)) == 40 and labels(0) == labels(0) and labels(0) != labels(1)


def test_eval_stream_splits_shards_across_workers(tmp_path):
    pack_dataset(Toy(12), tmp_path, "val", 3, progress=False)
    loader = torch.utils.data.DataLoader(
        ShardDataset(tmp_path, split="val"), batch_size=None, num_workers=2
    )
    seen = sorted(to_uint8(x).numpy().tobytes() for x, _ in loader)
    assert seen == sorted(im.transpose(2, 0, 1).tobytes() for im in Toy(12).images)


def test_resize_on_read(tmp_path):
    pack_dataset(Toy(2), tmp_path, "train", 4, progress=False)
    x, _ = next(iter(ShardDataset(tmp_path, size=4, split="train")))
    assert x.shape == (3, 4, 4)


def test_shard_urls_forms(tmp_path):
    pack_dataset(Toy(8), tmp_path, "train", 4, progress=False)
    pack_dataset(Toy(2), tmp_path, "val", 4, progress=False)
    train = [str(tmp_path / f"train-00000{i}.tar") for i in range(2)]
    assert shard_urls(tmp_path, "train") == train
    assert shard_urls(str(tmp_path / "train-*.tar")) == train
    assert shard_urls(str(tmp_path / "train-{000000..000001}.tar")) == train
    assert len(shard_urls(tmp_path)) == 3
    with pytest.raises(FileNotFoundError, match="no .tar shards"):
        shard_urls(tmp_path / "nothing-*.tar")
    with pytest.raises(FileNotFoundError, match="test-"):
        shard_urls(tmp_path, "test")  # a folder never falls back to another split's shards


def test_corrupt_member_does_not_stop_a_stream(tmp_path):
    pack_dataset(Toy(3), tmp_path, "train", 4, progress=False, seed=None)
    path = tmp_path / "train-000000.tar"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for m, data in members:
            data = b"garbage" if m.name == "00000001.png" else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    recs = list(ShardDataset(path).records())
    assert sum(isinstance(r, BadImageError) for r in recs) == 1
    assert len(list(ShardDataset(path))) == 2
