"""What a `.vtoks` record name may be: a relative POSIX path that is safe to write to and to show.

A record's name becomes an output path (`vistok decode set.vtoks -o DIR` writes `DIR/<name>.png`)
and a line on a terminal (`vistok info`), so the container refuses, at write and at read, names
that could do harm or that no honest encoder writes:

- empty names, names over 4096 bytes of UTF-8, path components over 255 bytes (PATH_MAX and
  NAME_MAX of the usual file systems: such a name could not be written out anyway);
- names that are not valid Unicode (a lone surrogate: an undecodable file name) or not valid
  UTF-8 in the file;
- control characters: C0 (U+0000..U+001F, NUL and newline among them), DEL (U+007F) and C1
  (U+0080..U+009F): they truncate paths (NUL), forge lines in logs and drive terminals;
- the bidirectional controls of the "Trojan Source" attacks (U+061C, U+200E, U+200F,
  U+202A..U+202E, U+2066..U+2069) and the line / paragraph separators (U+2028, U+2029): they
  make a name display as another one. Other invisible format characters are allowed: the zero
  width joiner (U+200D) is part of emoji sequences, which are legitimate file names in an emoji
  data set; `vistok info` shows them escaped anyway (`tokenizers_vis.text.printable`);
- absolute paths (`/etc/x`), a drive prefix (`C:...`), backslashes (a Windows path separator:
  names always use `/`), and empty, `.` or `..` components (`a//b`, `./a`, `../a`): a name is the
  canonical relative path `Path.as_posix()` gives, and can never leave the output folder.
"""

from __future__ import annotations

import re

from tokenizers_vis.text import printable

__all__ = ["MAX_COMPONENT_BYTES", "MAX_NAME_BYTES", "describe", "name_problem"]

MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SEPARATORS = frozenset("\u2028\u2029")
_DRIVE = re.compile(r"[A-Za-z]:")


def _character_problem(name: str) -> str | None:
    for ch in name:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"contains the control character U+{code:04X}"
        if ch in _BIDI:
            return f"contains the bidirectional control U+{code:04X}"
        if ch in _SEPARATORS:
            return f"contains the line separator U+{code:04X}"
        if 0xD800 <= code <= 0xDFFF:
            return "is not valid Unicode (an undecodable file name?)"
        if ch == "\\":
            return "contains a backslash (names separate folders with '/')"
    return None


def _path_problem(name: str) -> str | None:
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    for part in name.split("/"):
        if not part:
            return "has an empty path component"
        if part in (".", ".."):
            return f"has a '{part}' path component"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"has a path component over {MAX_COMPONENT_BYTES} bytes"
    return None


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a record name (a phrase starting with a verb), or None if it can.

    Example: `name_problem("../x.png")` is "has a '..' path component".
    """
    if not name:
        return "is empty"
    problem = _character_problem(name)  # first: the UTF-8 length of a lone surrogate fails
    if problem is None and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is over {MAX_NAME_BYTES} bytes"
    return problem or _path_problem(name)


def describe(name: str, problem: str) -> str:
    """One line: the name (escaped, at most 80 characters) and its problem."""
    shown = printable(name)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"record name '{shown}' {problem}"
