"""ResumableLoader / ResumableSampler: a resumed loader continues with the batches an
uninterrupted one would have given; shard streams are re-seeded, not replayed."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from tokenizers_vis.data.datamodule import ImageDataModule
from tokenizers_vis.data.folder import FolderDataset
from tokenizers_vis.data.resumable import ResumableLoader, ResumableSampler
from tokenizers_vis.data.shards import pack_dataset

N, BATCH = 21, 4  # 5 full batches per epoch, one sample dropped


class Indices(torch.utils.data.Dataset):
    """Item i is i; remembers which items were read (in this process)."""

    def __init__(self, n: int = N):
        self.n, self.reads = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        self.reads.append(i)
        return i


def make_loader(num_workers: int = 0, replicas: int = 1, rank: int = 0, seed: int = 3):
    ds = Indices()
    return ResumableLoader(
        ds,
        batch_size=BATCH,
        sampler=ResumableSampler(ds, num_replicas=replicas, rank=rank, seed=seed),
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def take(loader: ResumableLoader, stop: int) -> list[list[int]]:
    """`stop` batches from the loader's epoch on, drawn as Lightning does: set_epoch, a pass."""
    out: list[list[int]] = []
    epoch = loader.state_dict()["epoch"]  # after load_state_dict: the epoch to continue
    while len(out) < stop:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            out.append(batch.tolist())
            if len(out) == stop:
                break
        epoch += 1
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("cut", [2, 5, 7], ids=["mid-epoch", "epoch-end", "next-epoch"])
def test_resumed_loader_continues_the_uninterrupted_one(num_workers, cut):
    straight = take(make_loader(num_workers), 12)
    first = make_loader(num_workers)
    head = take(first, cut)
    state = first.state_dict()
    assert state["epoch"] == (cut - 1) // 5 and state["batches"] == cut - 5 * state["epoch"]

    resumed = make_loader(num_workers)
    resumed.load_state_dict(state)
    assert head + take(resumed, 12 - cut) == straight


def test_skipped_batches_are_never_read():
    first = make_loader()
    take(first, 3)
    resumed = make_loader()
    resumed.load_state_dict(first.state_dict())
    rest = [i for batch in resumed for i in batch.tolist()]
    assert len(rest) == 2 * BATCH and resumed.dataset.reads == rest  # no decode for the skip


@pytest.mark.parametrize("replicas", [2, 3])
def test_ranks_stay_disjoint_and_resume_their_own_slice(replicas):
    orders = [make_loader(replicas=replicas, rank=r).sampler.order() for r in range(replicas)]
    assert all(len(o) == len(orders[0]) for o in orders)
    seen = [i for o in orders for i in o]
    assert set(seen) == set(range(N))
    assert len(seen) - len(set(seen)) == -N % replicas  # only DistributedSampler's padding

    # Lightning saves rank 0's state; every rank restores its own slice from it.
    loaders = [make_loader(replicas=replicas, rank=r) for r in range(replicas)]
    straight = [take(make_loader(replicas=replicas, rank=r), 3) for r in range(replicas)]
    heads = [take(loader, 1) for loader in loaders]
    state = loaders[0].state_dict()
    for rank in range(replicas):
        resumed = make_loader(replicas=replicas, rank=rank)
        resumed.load_state_dict(state)
        assert heads[rank] + take(resumed, 2) == straight[rank]


def test_more_devices_after_resume_continue_at_the_same_sample():
    single = make_loader()
    head = [i for batch in take(single, 2) for i in batch]
    halves = [make_loader(replicas=2, rank=r) for r in (0, 1)]
    for loader in halves:
        loader.load_state_dict(single.state_dict())
    rest = [i for loader in halves for batch in loader for i in batch.tolist()]
    order = single.sampler.order()
    assert head == order[: 2 * BATCH]
    assert sorted(rest) == sorted(order[2 * BATCH : 2 * BATCH + len(rest)])


def test_checkpoint_seed_wins_with_a_warning():
    first = make_loader(seed=3)
    head = take(first, 2)
    resumed = make_loader(seed=4)
    with pytest.warns(UserWarning, match="data seed 3"):
        resumed.load_state_dict(first.state_dict())
    assert head + take(resumed, 3) == take(make_loader(seed=3), 5)


# --- through ImageDataModule and Lightning ---------------------------------------------------


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """train/ (22 images) and val/ (4) of distinct 8x8 images in three class folders."""
    root = tmp_path_factory.mktemp("resume-images")
    for split, n in (("train", 22), ("val", 4)):
        for i in range(n):
            folder = root / split / f"c{i % 3}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.zeros((8, 8, 3), np.uint8)
            pixels[..., 0] = 10 * i  # what `values` reads back
            Image.fromarray(pixels).save(folder / f"{split}{i}.png")
    return root


class BatchProbe(L.LightningModule):
    """Records each training batch (its images' channel-0 value) by global step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.batches: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        x, _ = batch
        self.batches[self.global_step] = ((x[:, 0, 0, 0] + 1) * 127.5).round().int().tolist()
        return (x.mean() - self.w) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(datamodule, root: Path, max_steps: int, ckpt_path=None, callbacks=()) -> BatchProbe:
    L.seed_everything(0, verbose=False)  # as the CLI does; worker seeds of shard streams
    probe = BatchProbe()
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=root,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(probe, datamodule=datamodule, ckpt_path=ckpt_path)
    # Lightning's mid-epoch warning is gone because it no longer applies (stateful loader).
    assert not [w for w in caught if "not resumable" in str(w.message)]
    return probe


def every_step(root: Path) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=1, save_top_k=-1)


def loader_state(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    (state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    return state


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lightning_resume_sees_the_uninterrupted_batches(image_root, tmp_path, num_workers):
    def datamodule():
        return ImageDataModule(
            f"folder:{image_root}", image_size=8, batch_size=4, seed=5, num_workers=num_workers
        )

    steps = 12  # 5 batches per epoch (22 images, last 2 dropped)
    straight = fit(datamodule(), tmp_path, steps, callbacks=[every_step(tmp_path / "ckpt")])
    assert straight.batches[0] != straight.batches[5]  # a new order each epoch
    for step in (3, 5, 7):  # mid-epoch, epoch end, mid next epoch
        # What Lightning 2.6 saved is the batches *trained* in the epoch: it does not fetch
        # a loader with a length ahead (see tokenizers_vis/data/resumable.py).
        state = loader_state(tmp_path / "ckpt" / f"step={step}.ckpt")
        assert (state["epoch"], state["batches"]) == ((step - 1) // 5, (step - 1) % 5 + 1)
        resumed = fit(datamodule(), tmp_path, steps, tmp_path / "ckpt" / f"step={step}.ckpt")
        assert sorted(resumed.batches) == list(range(step, steps))
        assert resumed.batches == {s: straight.batches[s] for s in range(step, steps)}


def test_datamodule_slices_by_the_trainers_rank(image_root):
    orders = []
    for rank in (0, 1):
        dm = ImageDataModule(f"folder:{image_root}", image_size=8, batch_size=4)
        dm.trainer = SimpleNamespace(
            distributed_sampler_kwargs={"num_replicas": 2, "rank": rank}, world_size=2
        )
        sampler = dm.train_dataloader().sampler
        assert isinstance(sampler, ResumableSampler) and sampler.rank == rank
        orders.append(sampler.order())
    assert not set(orders[0]) & set(orders[1])
    assert len(orders[0]) == len(orders[1]) == 11


# --- shard streams ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_dir(image_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume-shards")
    for split in ("train", "val"):
        pack_dataset(FolderDataset(image_root, split, 8), out, split, shard_size=8, progress=False)
    return out


def shard_loader(shard_dir: Path, num_workers: int = 0) -> ResumableLoader:
    dm = ImageDataModule(
        f"shards:{shard_dir}",
        image_size=8,
        batch_size=4,
        num_workers=num_workers,
        shuffle_buffer=8,
        train_samples_per_epoch=20,
    )
    dm.setup("fit")
    return dm.train_dataloader()


def values(batches) -> list[list[int]]:
    return [((x[:, 0, 0, 0] + 1) * 127.5).round().int().tolist() for x, _ in batches]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_shard_stream_is_reseeded_not_replayed(shard_dir, num_workers):
    torch.manual_seed(0)  # worker seeds come from the global RNG (seed_everything in a run)
    first = shard_loader(shard_dir, num_workers)
    straight = values(first)  # one epoch: 20 samples per device
    it = iter(first)
    head = values(next(it) for _ in range(2))
    state = first.state_dict()
    # Free the loaders (and so their workers) here: Lightning's save_hyperparameters leaves a
    # frame cycle that holds the callers' locals until a gc pass, whose worker shutdown then
    # waits 5 s per worker.
    del it, first
    assert (state["epoch"], state["batches"]) == (1, 2)
    assert state["total_batches"] == len(straight) + 2

    def resume() -> list[list[int]]:
        torch.manual_seed(0)
        loader = shard_loader(shard_dir, num_workers)
        loader.load_state_dict(state)
        rest = values(loader)
        del loader
        return rest

    rest = resume()
    assert rest == resume()  # the same checkpoint resumes the same stream
    assert rest != straight[: len(rest)]  # not the stream the run started with
    assert head != straight[:2]  # (as a second epoch draws anew)
    # The first pass after resuming holds what the interrupted epoch had left.
    assert len(rest) == (3 if num_workers == 0 else 2)
    assert all(len(batch) == 4 for batch in rest)


def test_lightning_counts_a_shard_stream_one_batch_ahead(shard_dir, tmp_path):
    def datamodule():
        return ImageDataModule(
            f"shards:{shard_dir}", image_size=8, batch_size=4, train_samples_per_epoch=20
        )

    fit(datamodule(), tmp_path, 2, callbacks=[every_step(tmp_path)])
    # Two steps trained, three batches handed out: a loader without a length is fetched
    # one ahead. For a re-seeded stream that only shortens the resumed epoch by one batch.
    assert loader_state(tmp_path / "step=2.ckpt")["batches"] == 3
    resumed = fit(datamodule(), tmp_path, 4, tmp_path / "step=2.ckpt")
    assert sorted(resumed.batches) == [2, 3]
