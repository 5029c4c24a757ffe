"""tools/device_photos.py: the one-entry EET archive reads back to the very JPEG bytes packed."""

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

from tokenizers_vis.data.eet import jpeg_entries, largest_jpeg

TOOLS = Path(__file__).parents[1] / "tools"
spec = importlib.util.spec_from_file_location("device_photos", TOOLS / "device_photos.py")
device_photos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(device_photos)


def _jpeg(w: int, h: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_one_entry_eet_holds_the_jpeg_bytes(tmp_path):
    jpeg = _jpeg(40, 24)
    path = tmp_path / "Photo.edj"
    path.write_bytes(device_photos.one_entry_eet(jpeg))
    entries = jpeg_entries(path)
    assert [(name, size) for name, size, _ in entries] == [("edje/images/0", (40, 24))]
    assert largest_jpeg(path, 2560) == jpeg
    assert device_photos._loaded_bytes(path) == jpeg
