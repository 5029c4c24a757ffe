"""Text that came from a file, made safe to print on a terminal or in a log line.

A name stored in a file (a `.vtoks` record name, a string in a config) is whatever its writer
put there: a newline forges a second output line, an ANSI escape (ESC [ ...) rewrites the
terminal, U+202E (right-to-left override) shows `gnp.exe` as `exe.png`. `printable` shows every
character that is not printable text as a visible escape, the way Python's `repr` does, and
doubles backslashes so the escapes stay unambiguous.
"""

from __future__ import annotations

__all__ = ["printable"]

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, backslash: bool = True) -> str:
    """`text` with control, format (bidi), separator, surrogate and unassigned characters as
    `\\n`, `\\x1b`, `\\u202e` escapes (`str.isprintable`'s rule; a space stays a space).

    Args:
        backslash: double backslashes too (unambiguous); False for a message that may already
            hold escapes (a reason quoting a name through `printable`).
    """
    keep = "" if backslash else "\\"
    if text.isprintable() and (not backslash or "\\" not in text):
        return text
    return "".join(
        ch if (ch.isprintable() and ch != "\\") or ch == keep else _escape(ch) for ch in text
    )
