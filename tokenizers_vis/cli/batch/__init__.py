"""Batch file handling of the codec commands (`vistok encode` / `vistok decode`): which files a
command reads and where each result goes (`paths`), and encoding / decoding them in bulk with a
summary of what failed and why (`files`). The library's `tokenizers_vis.codec` codes one image or
one token file; everything about folders, globs, output names and overwriting lives here.

    from tokenizers_vis.cli.batch import encode_files
    summary = encode_files(codec, ["photos/"], "tokens/")   # what `vistok encode` runs
"""

from tokenizers_vis.cli.batch.files import FORMATS, Failure, Summary, decode_files, encode_files

__all__ = ["FORMATS", "Failure", "Summary", "decode_files", "encode_files"]
