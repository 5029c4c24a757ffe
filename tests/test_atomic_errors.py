"""Every atomic writer, on every error path: no temporary file is left, and an `OSError` names
the destination the caller gave, never the hidden temporary name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenizers_vis.atomic import (
    AtomicFile,
    OutputExistsError,
    atomic_write,
    atomic_write_with,
    blame_destination,
    write_atomic,
)
from tokenizers_vis.codec.container import Container


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def _write_container(path: Path) -> None:
    with Container(path, "w") as box:
        box.append("a.png", b"a .vtok file is not checked on write")


WRITERS = {
    "atomic_write": lambda p: atomic_write(p, b"data"),
    "atomic_write_with": lambda p: atomic_write_with(p, lambda tmp: tmp.write_bytes(b"data")),
    "write_atomic": lambda p: write_atomic(p, b"data", overwrite=True),
    "AtomicFile": lambda p: AtomicFile(p).commit(),
    "Container": _write_container,
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_directory_in_the_way_names_the_destination(tmp_path, writer):
    target = tmp_path / "out.bin"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as err:
        WRITERS[writer](target)
    assert err.value.filename == str(target) and ".tmp" not in str(err.value)
    assert _leftovers(tmp_path) == [] and target.is_dir()


@pytest.mark.parametrize("writer", [w for w in WRITERS if w != "write_atomic"])  # makes folders
def test_a_missing_folder_names_the_destination(tmp_path, writer):
    target = tmp_path / "missing" / "out.bin"
    with pytest.raises(FileNotFoundError) as err:
        WRITERS[writer](target)
    assert err.value.filename == str(target) and ".tmp" not in str(err.value)
    assert _leftovers(tmp_path) == []


def test_a_writer_failing_midway_leaves_nothing(tmp_path):
    def half(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError, match="No space left") as err:
        atomic_write_with(tmp_path / "out.bin", half)
    assert err.value.filename == str(tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


def test_the_destination_appearing_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    real_open = open

    def racing_open(path, *args, **kwargs):  # another process creates the output first
        if str(path).endswith(".tmp"):
            target.write_bytes(b"theirs")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", racing_open)
    with pytest.raises(OutputExistsError):
        write_atomic(target, b"ours", overwrite=False)
    monkeypatch.undo()
    assert target.read_bytes() == b"theirs" and _leftovers(tmp_path) == []


def test_a_failed_container_rename_leaves_nothing(tmp_path):
    target = tmp_path / "set.vtoks"
    box = Container(target, "w")
    box.append("a.png", b"a .vtok file is not checked on write")
    target.mkdir()  # appears between opening and the final rename
    with pytest.raises(IsADirectoryError) as err:
        box.close()
    assert err.value.filename == str(target) and _leftovers(tmp_path) == []


def test_errors_inside_a_temporary_folder_name_the_destination(tmp_path):
    """convert / export build a hidden folder, then rename it: a file inside it is named as it
    will be inside the destination."""
    tmp, dst = tmp_path / ".out.1.abcd1234.tmp", tmp_path / "out"
    with pytest.raises(FileNotFoundError) as err, blame_destination(tmp, dst):
        open(tmp / "config.json")  # noqa: SIM115
    assert err.value.filename == str(dst / "config.json")
    with pytest.raises(FileNotFoundError) as err, blame_destination(tmp, dst):
        open(tmp_path / "elsewhere.json")  # noqa: SIM115  (not ours: left as it is)
    assert err.value.filename == str(tmp_path / "elsewhere.json")
