"""Pack the training and validation photographs for a machine that cannot install them.

The `photos` data reads Debian's wallpaper packages from their install paths and two Python
packages' bundled images (tokenizers_vis/data/photos.py). A lent GPU machine has none of them
and no registry, so `pack` copies the files that the loader reads into one folder that mirrors
those paths, small enough to travel with the working tree:

- a Debian file as it is (for a KDE wallpaper only its largest size, the one the loader picks);
- an Enlightenment `.edj` (30 MB, every screen size) as a one-entry EET archive holding only the
  JPEG entry the loader takes (the largest within MAX_SIDE), byte for byte;
- the scikit-image / matplotlib images under `site/<module path>`.

`install` (on the other machine, as root) copies them into place, and `check` compares the photo
set the loader then sees, and the bytes of each photo, with the manifest that `pack` wrote, so
a run never trains on a silently smaller or different set. Test photos are never packed.

    python tools/device_photos.py pack .device/photos
    python tools/device_photos.py install .device/photos   # there, as root
    python tools/device_photos.py check .device/photos
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shutil
import struct
import sys
from pathlib import Path

from tokenizers_vis.data.eet import EET_MAGIC, largest_jpeg
from tokenizers_vis.data.photos import MAX_SIDE, PHOTO_SPLITS, photo_sources

MODULES = {"skimage": "skimage.data", "matplotlib": "matplotlib"}


def _loaded_bytes(path: Path) -> bytes:
    """The bytes the loader decodes for `path` (an .edj's chosen JPEG entry, else the file)."""
    return largest_jpeg(path, MAX_SIDE) if path.suffix == ".edj" else path.read_bytes()


def one_entry_eet(jpeg: bytes, name: str = "edje/images/0") -> bytes:
    """An EET archive with a single uncompressed entry `name` holding `jpeg`."""
    name_bytes = name.encode() + b"\0"
    header, entry = struct.Struct(">3i"), struct.Struct(">6i")
    name_at = header.size + entry.size
    data_at = name_at + len(name_bytes)
    return (
        header.pack(EET_MAGIC, 1, 0)
        + entry.pack(data_at, len(jpeg), len(jpeg), name_at, len(name_bytes), 0)
        + name_bytes
        + jpeg
    )


def _held_in() -> dict[str, Path]:
    test = set(PHOTO_SPLITS["test"])
    return {name: path for name, path in photo_sources().items() if name not in test}


def _packed_path(out: Path, name: str, path: Path) -> Path:
    prefix = name.split("/", 1)[0]
    if prefix in MODULES:
        root = Path(importlib.import_module(MODULES[prefix]).__file__).parent
        return out / "site" / prefix / path.relative_to(root)
    return out / "root" / path.relative_to("/")


def pack(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    manifest = {}
    for name, path in _held_in().items():
        loaded = _loaded_bytes(path)
        dest = _packed_path(out, name, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(one_entry_eet(loaded) if path.suffix == ".edj" else loaded)
        manifest[name] = hashlib.sha256(loaded).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"packed {len(manifest)} photos into {out} ({size / 2**20:.1f} MiB)")


def install(src: Path) -> None:
    for file in (src / "root").rglob("*"):
        if file.is_file():
            dest = Path("/") / file.relative_to(src / "root")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, dest)
    for prefix, module in MODULES.items():
        root = Path(importlib.import_module(module).__file__).parent
        for file in (src / "site" / prefix).rglob("*"):
            if file.is_file():
                dest = root / file.relative_to(src / "site" / prefix)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, dest)


def check(src: Path) -> int:
    want = json.loads((src / "manifest.json").read_text())
    have = {name: hashlib.sha256(_loaded_bytes(p)).hexdigest() for name, p in _held_in().items()}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    differ = sorted(n for n in set(want) & set(have) if want[n] != have[n])
    if missing or extra or differ:
        print(f"photo set differs: missing {missing}, extra {extra}, other bytes {differ}")
        return 1
    print(f"photo set matches the manifest: {len(want)} photos")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("pack", "install", "check"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.action == "pack":
        pack(args.folder)
    elif args.action == "install":
        install(args.folder)
    else:
        return check(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
