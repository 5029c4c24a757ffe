""".vtoks containers: append, random access, atomic writes, interrupted appends cut back."""

from __future__ import annotations

import numpy as np
import pytest

from tokenizers_vis.codec.container import Container, is_container
from tokenizers_vis.codec.format import Header, VtokError, dumps, loads

ID = bytes(8)


def _vtok(k: int) -> bytes:
    header = Header(ID, (16, 16), 16, 8, (125,), (k,))
    return dumps(header, np.arange(k).reshape(1, k, 1) % 125)


def test_write_reopen_append_and_random_access(tmp_path):
    path = tmp_path / "set.vtoks"
    with Container(path, "w") as box:
        for k in range(1, 6):
            assert box.append(f"dir/img{k}.png", _vtok(k)) == k - 1
        assert not path.exists()  # written under a temporary name until close
    assert is_container(path)
    with Container(path, "a") as box:
        box.append("extra", _vtok(8))
    with Container(path) as box:
        assert len(box) == 6
        assert box.record(2) == ("dir/img3.png", _vtok(3))
        assert loads(box[-1]).header.lengths == (8,)
        assert [name for name, _ in box][:2] == ["dir/img1.png", "dir/img2.png"]
        with pytest.raises(IndexError):
            box.record(6)
    assert list(tmp_path.iterdir()) == [path]


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "set.vtoks"
    with pytest.raises(RuntimeError), Container(path, "w") as box:
        box.append("a", _vtok(1))
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


class _HalfWrite:
    """A file whose next write reaches the disk half-way, then Ctrl-C arrives."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_interrupted_append_is_cut_back(tmp_path):
    path = tmp_path / "set.vtoks"
    with Container(path, "w") as box:
        box.append("a", _vtok(2))
    size = path.stat().st_size
    box = Container(path, "a")
    raw, box._file = box._file, _HalfWrite(box._file)
    with pytest.raises(KeyboardInterrupt):
        box.append("b", _vtok(3))
    box._file = raw
    box.close()
    assert path.stat().st_size == size
    with Container(path) as again:
        assert len(again) == 1 and not again.damaged_tail


def test_a_killed_append_is_reported_then_repaired(tmp_path):
    path = tmp_path / "set.vtoks"
    with Container(path, "w") as box:
        box.append("a", _vtok(2))
        box.append("b", _vtok(3))
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # the last record lost its end (kill -9 mid-write)
    with Container(path) as box:
        assert len(box) == 1 and box.damaged_tail > 0
    with Container(path, "a") as box:
        box.append("c", _vtok(4))
    with Container(path) as box:
        assert [n for n, _ in box] == ["a", "c"] and not box.damaged_tail


def test_not_a_container(tmp_path):
    path = tmp_path / "x.vtoks"
    path.write_bytes(_vtok(1))
    assert not is_container(path)
    with pytest.raises(VtokError, match="not a .vtoks container"):
        Container(path)
