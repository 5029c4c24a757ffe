"""ImageDataModule: the same batches from shards and from map-style specs."""

from __future__ import annotations

import pytest
import torch

from tokenizers_vis.data.datamodule import ImageDataModule
from tokenizers_vis.data.emoji import EMOJI_FONT, EmojiDataset
from tokenizers_vis.data.resumable import ResumableSampler
from tokenizers_vis.data.shards import pack_dataset

needs_font = pytest.mark.skipif(not EMOJI_FONT.is_file(), reason="fonts-noto-color-emoji missing")
SIZE = 16


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "vistok-cache"  # shared with test_data_emoji


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("emoji-shards")
    for split, n in (("train", 96), ("val", 20)):
        ds = EmojiDataset(split, SIZE, cache_dir=cache_dir)
        ds.images, ds.labels = ds.images[:n], ds.labels[:n]  # a small pack is enough here
        pack_dataset(ds, out, split, shard_size=32, progress=False)
    return out


def _check_batch(batch, batch_size: int) -> None:
    x, y = batch
    assert x.shape == (batch_size, 3, SIZE, SIZE) and x.dtype == torch.float32
    assert y.shape == (batch_size,) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1 and 0 <= y.min() and y.max() < 9


@needs_font
def test_batches_from_shards(shard_dir):
    dm = ImageDataModule(
        f"shards:{shard_dir}",
        image_size=SIZE,
        batch_size=8,
        shuffle_buffer=16,
        augment=True,
        train_samples_per_epoch=40,
    )
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert len(train) == 5  # 40 resampled samples per epoch
    for batch in train:
        _check_batch(batch, 8)
    assert dm.class_names[0] == "smileys"
    val = list(dm.val_dataloader())
    assert sum(len(y) for _, y in val) == 20  # every val sample exactly once
    _check_batch(val[0], 8)


@needs_font
def test_shard_train_epochs_differ_and_runs_repeat(shard_dir):
    def two_epochs(seed):
        dm = ImageDataModule(
            f"shards:{shard_dir}",
            image_size=SIZE,
            batch_size=8,
            seed=seed,
            shuffle_buffer=16,
            train_samples_per_epoch=16,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [torch.cat([x for x, _ in loader]) for _ in range(2)]

    a, b = two_epochs(0), two_epochs(0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])


@needs_font
def test_batches_from_map_style_emoji(cache_dir):
    dm = ImageDataModule(
        "emoji", image_size=SIZE, batch_size=32, dataset_kwargs={"cache_dir": str(cache_dir)}
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, ResumableSampler)  # rank-aware itself; Lightning keeps it
    assert loader.sampler.shuffle and loader.sampler.num_replicas == 1  # no trainer attached
    assert loader.drop_last
    _check_batch(next(iter(loader)), 32)
    val = dm.val_dataloader()
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)
    assert sum(len(y) for _, y in val) == len(dm.datasets["val"])
    dm.setup("test")
    _check_batch(next(iter(dm.test_dataloader())), 32)


def test_batches_from_photos():
    dm = ImageDataModule(
        "photos", image_size=SIZE, batch_size=4, augment=True, dataset_kwargs={"crops_per_epoch": 8}
    )
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, SIZE, SIZE) and y.dtype == torch.int64


def test_bad_spec_fails_at_construction():
    with pytest.raises(ValueError, match="known"):
        ImageDataModule("imagenet")


@needs_font
def test_lightning_trainer_consumes_the_module(shard_dir, tmp_path):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.shapes = []

        def training_step(self, batch, _):
            x, y = batch
            self.shapes.append((tuple(x.shape), y.dtype))
            return (x.mean() - self.w) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    probe = Probe()
    dm = ImageDataModule(
        f"shards:{shard_dir}", image_size=SIZE, batch_size=8, train_samples_per_epoch=16
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(probe, datamodule=dm)
    assert probe.shapes == [((8, 3, SIZE, SIZE), torch.int64)] * 4
