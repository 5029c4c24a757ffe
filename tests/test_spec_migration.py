"""Format 1 -> 2: `uniform_pow2` in a version-1 spec means our even mix (`uniform_or_pow2`),
while the shipped files keep their bytes, so their identities and static tables still hold."""

from __future__ import annotations

import json

import tokenizers_vis as tv
from tokenizers_vis.codec import Codec
from tokenizers_vis.codec.identity import directory_identity
from tokenizers_vis.hub import FORMAT_VERSION


def test_shipped_files_unchanged_and_read_in_todays_terms():
    for name in ("emoji32", "photo32"):
        directory = tv.hub.resolve(name)
        raw = json.loads((directory / "config.json").read_bytes())
        assert raw["format_version"] == 1
        assert raw["tokenizer"]["token_drop"]["sampling"] == "uniform_pow2"  # bytes as shipped
        table = json.loads((directory / "entropy_static.json").read_text())
        assert directory_identity(name).hex() == table["tokenizer_id"]
        codec = Codec.from_pretrained(name, entropy="static", device="cpu")
        assert codec.tokenizer.config["token_drop"]["sampling"] == "uniform_or_pow2"


def test_exports_write_version_2_and_keep_flextoks_name(tmp_path):
    spec = tv.create_tokenizer("tiny_cpu_fsq").config
    spec["token_drop"] = {**spec["token_drop"], "sampling": "uniform_pow2"}
    directory = tv.Tokenizer(**spec).save_pretrained(tmp_path / "m")
    assert json.loads((directory / "config.json").read_text())["format_version"] == FORMAT_VERSION
    assert tv.Tokenizer.from_pretrained(directory).config["token_drop"]["sampling"] == (
        "uniform_pow2"
    )
    config = json.loads((directory / "config.json").read_text())
    config["format_version"] = 1
    (directory / "config.json").write_text(json.dumps(config))
    assert tv.Tokenizer.from_pretrained(directory).config["token_drop"]["sampling"] == (
        "uniform_or_pow2"
    )
