"""`tokenizers_vis.atomic.AtomicFile` (streams seen whole or not at all) and the one cache
directory helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenizers_vis.atomic import AtomicFile
from tokenizers_vis.cache import cache_dir


def test_atomic_file_commits_on_success_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), AtomicFile(target) as f:
        f.write(b"half")
        assert target.read_bytes() == b"old"  # nothing visible while writing
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with AtomicFile(target) as f:
        f.write(b"new ")
        f.write(b"bytes")
    assert target.read_bytes() == b"new bytes" and sorted(tmp_path.iterdir()) == [target]
    out = AtomicFile(tmp_path / "manual.bin")
    out.file.write(b"x")
    assert out.commit() == tmp_path / "manual.bin"
    assert (tmp_path / "manual.bin").read_bytes() == b"x"


def test_cache_dir_precedence(monkeypatch, tmp_path: Path) -> None:
    for name in ("VISTOK_CACHE_DIR", "VISTOK_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "vistok"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert (
        cache_dir("inception", "w.safetensors") == tmp_path / "xdg/vistok/inception/w.safetensors"
    )
    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path / "old"))
    assert cache_dir() == tmp_path / "old"
    monkeypatch.setenv("VISTOK_CACHE_DIR", str(tmp_path / "new"))
    assert cache_dir("fid_reference") == tmp_path / "new" / "fid_reference"
    assert not (tmp_path / "new").exists()  # nothing is created
