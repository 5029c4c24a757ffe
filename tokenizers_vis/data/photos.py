"""Photos: square crops of real photographs that ship offline with our dependencies.

Sources (see SOURCES.md for licences; photographs only, picked by name where a package mixes
them with artwork):
- scikit-image's bundled photographs (in the wheel, no pooch download): colour astronaut,
  chelsea, coffee, rocket, hubble_deep_field; grayscale camera, coins, brick, grass, gravel
  (loaded as RGB). Left out: synthetic and medical/microscopy images, `moon` and the Middlebury
  motorcycle pair (no licence statement).
- matplotlib's sample photograph `grace_hopper.jpg` (a U.S. Navy photograph, public domain).
- Debian mate-backgrounds' `nature/` wallpapers: twelve photographs (1280x1024 to 2560x1920).
  Its `abstract/` and `desktop/` folders are artwork and logos, not photos.
- Debian lomiri-wallpapers-16.04: thirteen photographs from the Ubuntu Touch wallpaper
  contest (CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0 per file). Left out: `umang` (digital artwork) and
  `analogpattern` (an abstract texture). lomiri-wallpapers-20.04: one photograph, `Kleiber`
  (its other three wallpapers are artwork).
- Debian plasma-workspace-wallpapers: eleven photographs, picked by hand; the other KDE
  wallpapers are renders and illustrations.
- Debian enlightenment-data: fourteen photographs stored in Edje wallpapers (`.edj`, read with
  `tokenizers_vis.data.eet`); its vector and texture wallpapers are left out.

Split by source photo, fixed by name so it never depends on which packages are installed:
val = coffee, RainDrops, life, Path, Kleiber, grace_hopper; test = chelsea, Dune, friends,
EveningGlow; train = the rest (52 photos with every package installed). Kleiber and
grace_hopper come from sources (package and photographer) that no training photo shares, so
validation also measures photos from unseen sources. The test split is unchanged since
photo32 (its model card was measured on it).

A crop is a random square, resized with Lanczos (after an exact box reduction: Pillow's
reducing_gap). Its side is drawn one of two ways:
- `scale` (default): the crop covers a uniform random fraction of the photo's area (aspect 1,
  like RandomResizedCrop with ratio 1), so it is always much larger than the output;
- `zoom` (multi-scale): the side is log-uniform between zoom[0] and zoom[1] times the output
  size (capped by the photo's shorter side), equal weight per octave, so crops range from the
  photo's own pixels (zoom 1: what a tile of a full-resolution photo sees) to a whole-photo
  thumbnail.
The train split draws new crops every epoch; val/test crops are a pure function of (seed,
index), so evaluation always sees the same set.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tokenizers_vis.data.eet import largest_jpeg
from tokenizers_vis.data.errors import DataError, MissingDataError
from tokenizers_vis.data.transforms import (
    WorkerGenerator,
    load_rgb,
    mix_seed,
    random_crop_flip,
    to_tensor,
)

__all__ = [
    "MATE_NATURE_DIR",
    "PHOTO_PACKAGES",
    "PHOTO_SPLITS",
    "PhotoCropDataset",
    "photo_package",
    "photo_sources",
]

MATE_NATURE_DIR = Path("/usr/share/backgrounds/mate/nature")
LOMIRI_DIR = Path("/usr/share/backgrounds")
PLASMA_DIR = Path("/usr/share/wallpapers")
ENLIGHTENMENT_DIR = Path("/usr/share/enlightenment/data/backgrounds")
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    # Grayscale photographs (loaded as RGB): a photo codec meets black-and-white photos too.
    "camera.png",
    "coins.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
MATPLOTLIB_PHOTOS = ("mpl-data/sample_data/grace_hopper.jpg",)
# Photographs only: both packages mix digital artwork in with them.
LOMIRI_PHOTOS = (
    "aitzgorri_by_Aitzol_Berasategi",
    "Bridge_by_Sander_Klootwijk",
    "Dragonfly_by_Bolly",
    "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi",
    "greentock_by_Peter_Nerlich",
    "life_by_Aitzol_Berasategi",
    "picosdeeuropa_by_Aitzol_Berasategi",
    "Picture_0B_by_freespace",
    "Picture_1A_by_freespace",
    "seeding_by_Clements_Engelhardt",
    "sunset_by_Aitzol_Berasategi",
    "Wine_by_Jakkub_Mede",
    "Kleiber_by_Lukas_Baubkus",  # lomiri-wallpapers-20.04
)
PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
# Photographs only: the package's Dunes, Flat-Fan and Sunset-Hills are vector art, Paper-Flower
# and Flat-Stone-Pattern flat textures, the Squiggles drawn.
ENLIGHTENMENT_PHOTOS = (
    "Bamboo",
    "Foggy-Trees",
    "God-Rays",
    "Green-Maple",
    "Lichen-Branches",
    "Mountain",
    "Peaks",
    "Red-Maple",
    "Sea-of-Lanterns",
    "Snow-Trees",
    "Spruce-Needles",
    "Sunset-Clouds",
    "White-Flower",
    "Yellow-Flower",
)
PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "val": (
        "skimage/coffee",
        "mate/RainDrops",
        "lomiri/life",
        "plasma/Path",
        # From sources no training photo shares (package and photographer).
        "lomiri/Kleiber",
        "matplotlib/grace_hopper",
    ),
    "test": ("skimage/chelsea", "mate/Dune", "lomiri/friends", "plasma/EveningGlow"),
}
# The package each photo installs with, by name prefix: what "held out by source" means.
PHOTO_PACKAGES = {
    "skimage": "scikit-image",
    "matplotlib": "matplotlib",
    "mate": "mate-backgrounds",
    "lomiri": "lomiri-wallpapers-16.04",
    "plasma": "plasma-workspace-wallpapers",
    "enlightenment": "enlightenment-data",
}
# Longest side kept in memory: the 32 and 64 px crops never need more, and a 5312x2988
# photo would hold 48 MB per worker.
MAX_SIDE = 2560


def _largest_image(folder: Path) -> Path | None:
    # A KDE wallpaper ships one JPEG per screen size, named WIDTHxHEIGHT.jpg.
    def pixels(path: Path) -> int:
        w, _, h = path.stem.partition("x")
        return int(w) * int(h) if w.isdigit() and h.isdigit() else 0

    files = [f for f in folder.glob("*.jpg") if pixels(f)]
    return max(files, key=pixels) if files else None


def _bundled(prefix: str, module: str, files: tuple[str, ...]) -> dict[str, Path]:
    """{prefix/stem: path} of the `files` (relative to `module`'s folder) that exist."""
    try:
        root = Path(importlib.import_module(module).__file__).parent
    except ImportError:
        return {}
    return {f"{prefix}/{Path(f).stem}": root / f for f in files if (root / f).is_file()}


def photo_sources(
    mate_dir: str | os.PathLike = MATE_NATURE_DIR,
    lomiri_dir: str | os.PathLike = LOMIRI_DIR,
    plasma_dir: str | os.PathLike = PLASMA_DIR,
    enlightenment_dir: str | os.PathLike = ENLIGHTENMENT_DIR,
) -> dict[str, Path]:
    """Every available source photo, as {"skimage/coffee": path, "mate/Dune": path, ...}.

    Lomiri photos are named by title ("lomiri/life"), KDE and Enlightenment ones by wallpaper
    ("plasma/Path", "enlightenment/Bamboo"). The order is fixed (new sources are appended), so
    a split's crops stay the same when other splits gain photos.
    """
    sources = _bundled("skimage", "skimage.data", SKIMAGE_PHOTOS)
    for path in sorted(Path(mate_dir).glob("*.jpg")):
        sources[f"mate/{path.stem}"] = path
    for stem in LOMIRI_PHOTOS:
        path = Path(lomiri_dir) / f"{stem}.jpg"
        if path.is_file():
            sources[f"lomiri/{stem.split('_by_')[0]}"] = path
    for name in PLASMA_PHOTOS:
        path = _largest_image(Path(plasma_dir) / name / "contents" / "images")
        if path is not None:
            sources[f"plasma/{name}"] = path
    for name in ENLIGHTENMENT_PHOTOS:
        path = Path(enlightenment_dir) / f"{name}.edj"
        if path.is_file():
            sources[f"enlightenment/{name}"] = path
    sources |= _bundled("matplotlib", "matplotlib", MATPLOTLIB_PHOTOS)
    return sources


def photo_package(name: str) -> str:
    """The package a photo installs with ("lomiri/Kleiber" -> "lomiri-wallpapers-20.04")."""
    if name == "lomiri/Kleiber":
        return "lomiri-wallpapers-20.04"
    return PHOTO_PACKAGES[name.split("/", 1)[0]]


def _split_of(name: str) -> str:
    return next((s for s, names in PHOTO_SPLITS.items() if name in names), "train")


@functools.lru_cache(maxsize=64)
def _photo(path: Path) -> Image.Image:
    # Decoding a 2560x1600 JPEG takes ~50 ms, so each worker keeps its photos (<= 20 MB each).
    # An Enlightenment wallpaper holds the photo at many sizes: take the largest within the cap.
    photo = load_rgb(largest_jpeg(path, MAX_SIDE) if path.suffix == ".edj" else path)
    if max(photo.size) > MAX_SIDE:
        factor = MAX_SIDE / max(photo.size)
        size = (round(photo.width * factor), round(photo.height * factor))
        photo = photo.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return photo


class PhotoCropDataset(torch.utils.data.Dataset):
    """Random square crops of real photos.

    Args:
        split: "train", "val", "test" or "all" (held out by source photo).
        size: output side in pixels.
        scale: range of the crop's area as a fraction of the photo's area; crops never
            exceed the photo's shorter side.
        zoom: multi-scale crops instead: the crop's side is log-uniform in
            [zoom[0] * size, zoom[1] * size], capped by the photo's shorter side (zoom 1 = the
            photo's own pixels). Overrides `scale`.
        crops_per_epoch: dataset length; defaults to 1000 for train, 100 for val/test.
        seed: seeds eval crops (per index) and the train generator.
        deterministic: crops fixed per (seed, index); default True except for train.
        augment: also flip left-right (train only; random crops are built in).
        mate_dir: where the MATE nature photos live.

    Items are `(image (3, size, size) float32 in [-1, 1], label)`, the label being the index
    of the source photo in `class_names`.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        scale: tuple[float, float] = (0.1, 1.0),
        crops_per_epoch: int | None = None,
        seed: int = 0,
        deterministic: bool | None = None,
        augment: bool = False,
        mate_dir: str | os.PathLike = MATE_NATURE_DIR,
        zoom: tuple[float, float] | None = None,
    ):
        if split not in ("train", "val", "test", "all"):
            raise DataError(f"unknown split {split!r}; known: train, val, test, all")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise DataError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        if zoom is not None and not 0 < zoom[0] <= zoom[1]:
            raise DataError(f"zoom must satisfy 0 < lo <= hi, got {zoom}")
        sources = photo_sources(mate_dir)
        # Labels index *all* photos, so a label means the same photo in every split.
        self.class_names = list(sources)
        self.paths = list(sources.values())
        self._pool = [i for i, n in enumerate(sources) if split in ("all", _split_of(n))]
        if not self._pool:
            raise MissingDataError(
                f"no photos for split {split!r}: install scikit-image and mate-backgrounds "
                "(and lomiri-wallpapers-16.04, lomiri-wallpapers-20.04, "
                "plasma-workspace-wallpapers, enlightenment-data for more: tools/setup.sh)"
            )
        self.split, self.size, self.scale, self.seed = split, size, scale, seed
        self.zoom = None if zoom is None else (float(zoom[0]), float(zoom[1]))
        self.length = crops_per_epoch or (1000 if split == "train" else 100)
        self.deterministic = split != "train" if deterministic is None else deterministic
        self.augment = augment
        self._rng = WorkerGenerator(seed)

    def __len__(self) -> int:
        return self.length

    def _generator(self, index: int) -> torch.Generator:
        if self.deterministic:
            return torch.Generator().manual_seed(mix_seed(self.seed, self.split, index))
        return self._rng()

    def _crop(self, index: int) -> tuple[Image.Image, int, dict]:
        gen = self._generator(index)
        label = self._pool[int(torch.randint(len(self._pool), (), generator=gen))]
        photo = _photo(self.paths[label])
        w, h = photo.size
        side = max(1, min(w, h, self._side(w, h, torch.rand((), generator=gen).item())))
        left = int(torch.randint(w - side + 1, (), generator=gen))
        top = int(torch.randint(h - side + 1, (), generator=gen))
        box = (left, top, left + side, top + side)
        # reducing_gap: box-reduce by an integer factor first, then Lanczos over the last <= 3x.
        # A 1,500 px crop to 32 px took 35 ms with Lanczos alone, more than a training step's
        # share per image; this is ~4x faster and 0.2 levels (of 255) from it on average.
        crop = photo.resize(
            (self.size, self.size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0
        )
        name = self.class_names[label]
        info = {
            "source": f"photos/{name}",
            "name": name,
            "split": _split_of(name),
            "original_size": [w, h],  # as loaded: after the MAX_SIDE cap, like crop_box
            "crop_box": list(box),
        }
        return crop, label, info

    def _side(self, w: int, h: int, u: float) -> int:
        """The crop's side for the uniform draw `u` in [0, 1)."""
        if self.zoom is None:
            lo, hi = self.scale
            return round(math.sqrt((lo + (hi - lo) * u) * w * h))
        # Log-uniform between the zoom bounds, the upper one capped by the photo: a photo too
        # small for zoom[0] gives its whole shorter side.
        lo = math.log(self.zoom[0] * self.size)
        hi = max(lo, math.log(min(self.zoom[1] * self.size, min(w, h))))
        return round(math.exp(lo + (hi - lo) * u))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        crop, label, _ = self._crop(index)
        x = to_tensor(crop)  # (3 size size)
        if self.augment and not self.deterministic:
            x = random_crop_flip(x, self._rng(), crop_scale=(1.0, 1.0))
        return x, label

    def record(self, index: int) -> tuple[np.ndarray, int, dict]:
        """(uint8 (size, size, 3) crop, label, JSON-able metadata) of item `index`."""
        crop, label, info = self._crop(index)
        return np.asarray(crop), label, info
