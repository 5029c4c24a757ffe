""".vtoks record names: refused at write and at read (that record only), protected by the
record checksum (version 2), still read from version 1 containers, escaped by `vistok info`."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from tokenizers_vis.cli.info import main as info
from tokenizers_vis.codec.container import (
    CONTAINER_VERSION,
    Container,
    RecordError,
    RecordNameError,
)
from tokenizers_vis.codec.format import Header, VtokError, dumps, encode_varint
from tokenizers_vis.codec.record_names import name_problem
from tokenizers_vis.text import printable

ID = bytes(8)

BAD_NAMES = {
    "": "is empty",
    "a\x00b.png": "control character U+0000",
    "line\nbreak.png": "control character U+000A",
    "tab\t.png": "control character U+0009",
    "esc\x1b[2J.png": "control character U+001B",
    "del\x7f.png": "control character U+007F",
    "c1\x85.png": "control character U+0085",
    "evil\u202egnp.exe": "bidirectional control U+202E",
    "iso\u2066late.png": "bidirectional control U+2066",
    "para\u2029.png": "line separator U+2029",
    "surrogate\udcff.png": "not valid Unicode",
    "/etc/passwd": "absolute path",
    "C:/Windows/x.png": "drive letter",
    "c:x.png": "drive letter",
    "dir\\x.png": "backslash",
    "../x.png": "'..' path component",
    "a/../../x.png": "'..' path component",
    "a/..": "'..' path component",
    "./x.png": "'.' path component",
    "a//b.png": "empty path component",
    "dir/": "empty path component",
    "x" * 256 + ".png": "component over 255 bytes",
    "/".join(["d" * 200] * 21): "over 4096 bytes",
}
GOOD_NAMES = [
    "a.png",
    "deep/dir/b.png",
    "12:30 shot.png",  # a colon inside a name is a legal POSIX file name
    "caf\u00e9/\u4e2d\u6587.png",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467.png",  # an emoji ZWJ sequence
    "..hidden.png",
    "x" * 255,
]


def _vtok(k: int = 2) -> bytes:
    header = Header(ID, (16, 16), 16, 8, (125,), (k,))
    return dumps(header, np.arange(k).reshape(1, k, 1) % 125)


def _raw_record(name: bytes, data: bytes, version: int) -> bytes:
    """A record as the format describes it, whatever its name (what a hostile writer makes)."""
    named = encode_varint(len(name)) + name
    if version == 1:
        return struct.pack("<I", len(named) + len(data)) + named + data
    head = struct.pack("<I", len(named) + 4 + len(data))
    return head + named + struct.pack("<I", zlib.crc32(head + named)) + data


def _raw_container(names: list[bytes], version: int = CONTAINER_VERSION) -> bytes:
    records = b"".join(_raw_record(n, _vtok(1 + i % 8), version) for i, n in enumerate(names))
    return b"VTKS" + bytes([version]) + records


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=range(len(BAD_NAMES)))
def test_bad_names_are_refused_at_write(tmp_path, name):
    assert BAD_NAMES[name] in name_problem(name)
    path = tmp_path / "set.vtoks"
    with Container(path, "w") as box:
        box.append("first.png", _vtok())
        with pytest.raises(RecordNameError, match="record name") as err:
            box.append(name, _vtok())
        assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
        assert "\u202e" not in str(err.value) and "\x00" not in str(err.value)
        box.append("last.png", _vtok())
    with Container(path) as box:  # the refused name left nothing behind
        assert [n for n, _ in box] == ["first.png", "last.png"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_round_trip(tmp_path, name):
    assert name_problem(name) is None
    with Container(tmp_path / "set.vtoks", "w") as box:
        box.append(name, _vtok())
    with Container(tmp_path / "set.vtoks") as box:
        assert box.record(0) == (name, _vtok())


@pytest.mark.parametrize("version", [1, 2])
def test_bad_names_fail_at_read_only_their_record(tmp_path, version):
    """23 records, the 5th named with a NUL (it used to stop a decode after 4 of 23 records):
    each bad record raises its own RecordError naming it, every other record reads."""
    names = [f"img{i:02d}.png".encode() for i in range(23)]
    bad = {4: b"a\x00b.png", 9: b"../../etc/x.png", 12: b"\xff\xfe.png", 17: b"/abs.png"}
    names = [bad.get(i, n) for i, n in enumerate(names)]
    path = tmp_path / "set.vtoks"
    path.write_bytes(_raw_container(names, version))
    with Container(path) as box:
        assert box.version == version and len(box) == 23
        for i in range(23):
            if i in bad:
                with pytest.raises(RecordError) as err:
                    box.record(i)
                assert err.value.index == i and str(err.value).startswith(f"{path}[{i}]: ")
                assert "\x00" not in err.value.reason
            else:
                assert box.record(i) == (names[i].decode(), _vtok(1 + i % 8))
    reasons = {}
    with Container(path) as box:
        for i in bad:
            try:
                box.record(i)
            except RecordError as err:
                reasons[i] = err.reason
    assert "U+0000" in reasons[4] and "'..'" in reasons[9]
    assert "not valid UTF-8" in reasons[12] and "absolute" in reasons[17]


def test_every_flipped_bit_of_a_name_or_length_is_detected(tmp_path):
    path = tmp_path / "set.vtoks"
    with Container(path, "w") as box:
        box.append("deep/name.png", _vtok(3))
        box.append("second.png", _vtok(4))
    data = path.read_bytes()
    first = 5  # the first record: L (4) | varint (1) | name (13) | CRC (4)
    for byte in range(first, first + 4 + 1 + 13):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[byte] ^= 1 << bit
            path.write_bytes(bytes(flipped))
            with Container(path) as box:
                if not len(box):  # a length now past the end: an incomplete record
                    assert box.damaged_tail
                    continue
                with pytest.raises(RecordError, match="damaged record"):
                    box.record(0)


def test_a_version_1_container_is_read_and_appended_in_its_version(tmp_path):
    path = tmp_path / "old.vtoks"
    path.write_bytes(_raw_container([b"a.png", b"dir/b.png"], version=1))
    with Container(path, "a") as box:
        assert box.version == 1
        box.append("c.png", _vtok(5))
        with pytest.raises(RecordNameError):
            box.append("../d.png", _vtok(5))
    assert path.read_bytes()[4] == 1
    with Container(path) as box:
        assert [n for n, _ in box] == ["a.png", "dir/b.png", "c.png"]
        assert box[2] == _vtok(5)


def test_new_containers_are_version_2(tmp_path):
    with Container(tmp_path / "new.vtoks", "a") as box:
        box.append("a.png", _vtok())
    assert (tmp_path / "new.vtoks").read_bytes()[:5] == b"VTKS\x02"
    assert CONTAINER_VERSION == 2


def test_printable_escapes_what_a_terminal_would_obey():
    assert printable("plain name.png") == "plain name.png"
    assert printable("a\nb") == "a\\nb"
    assert printable("\x1b[31mred") == "\\x1b[31mred"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert printable("back\\slash") == "back\\\\slash"
    assert printable("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"
    assert printable("\udcff") == "\\udcff"


def test_info_escapes_names_and_lists_bad_records(tmp_path, capsys):
    path = tmp_path / "set.vtoks"
    hostile = [b"ok.png", "evil\u202egnp.exe".encode(), b"x\x1b[2J\ny.png", "z\u200dw.png".encode()]
    path.write_bytes(_raw_container(hostile))
    assert info([str(path)]) == 1  # some record is unreadable
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\u202e" not in out + err and "\u200d" not in out
    lines = out.splitlines()
    assert lines[0].startswith(f"{path}: .vtoks container version 2, 4 records")
    assert lines[1].startswith("  [0] ok.png: 16x16")
    assert "[1] error: record name 'evil\\u202egnp.exe' contains the bidirectional" in lines[2]
    assert "[2] error: record name 'x\\x1b[2J\\ny.png' contains the control" in lines[3]
    assert lines[4].startswith("  [3] z\\u200dw.png: 16x16")  # allowed, shown escaped
    assert len(lines) == 5
    assert info([str(path), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)[0]
    assert [r.get("name") for r in doc["records"]] == ["ok.png", None, None, "z\u200dw.png"]
    assert "U+202E" in doc["records"][1]["error"]


def test_lengths_no_record_has_stop_the_scan(tmp_path):
    """10 MB of zero lengths would be 2.6 million empty records: the scan stops at the first
    length shorter than any record, and appending (which would cut the rest off) is refused."""
    path = tmp_path / "zeros.vtoks"
    good = _raw_container([b"a.png"])
    path.write_bytes(good + bytes(10_000_000))
    with Container(path) as box:
        assert len(box) == 1 and box.damaged_tail == 10_000_000
        assert box.record(0)[0] == "a.png"
    with pytest.raises(VtokError, match="not appending"):
        Container(path, "a")
    assert path.stat().st_size == len(good) + 10_000_000  # nothing cut off
    smallest = Header(ID, (1, 1), 1, 1, (1,), (1,))
    assert len(dumps(smallest, np.zeros((1, 1, 1), dtype=np.int64))) == 27  # _MIN_RECORD's
