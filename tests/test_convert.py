"""`vistok convert` / `tokenizers_vis.convert`: the machinery every published family goes through.

Test-only families stand in for the published ones: `renamed_tiny` is `tiny_cpu_vq` with every
key under "net/" and "/" for "." (a checkpoint in someone else's names), `split_tiny` the same
with the decoder in its own file (as legacy TiTok decodes through the MaskGIT-VQGAN's). They are
registered per test (`families` fixture), so FAMILIES is left as the package made it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tokenizers_vis as tv
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.convert import FAMILIES, ConversionError, Converted, Family
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.presets import preset_spec

PRESET = "tiny_cpu_vq"


class RenamedTiny(Family):
    """TEST ONLY: tiny_cpu_vq published as {"net/" + key with "/" for ".": tensor}; a config
    may give `num_latent_tokens` (what shapes alone would not say)."""

    name = "renamed_tiny"

    def convert(self, tensors, config=None):
        ours, unmapped = self.rename(tensors["model"], "model")
        if not ours:
            raise ConversionError("no net/ tensors: not a renamed_tiny checkpoint")
        overrides = {"max_tokens": config["num_latent_tokens"]} if config else {}
        return Converted(preset_spec(PRESET, **overrides), ours, unmapped, PRESET)

    @staticmethod
    def rename(tensors, source):
        ours, unmapped = {}, []
        for key, value in tensors.items():
            if key.startswith("net/"):
                ours[key.removeprefix("net/").replace("/", ".")] = value
            else:
                unmapped.append(f"{source}:{key}")
        return ours, unmapped


class SplitTiny(RenamedTiny):
    """TEST ONLY: renamed_tiny with the decoder's tensors in a second file, the "vqgan"."""

    name = "split_tiny"
    sources = ("model", "vqgan")

    def convert(self, tensors, config=None):
        ours, unmapped = self.rename(tensors["model"], "model")
        if "vqgan" not in tensors:  # the family, not the machinery, knows when it needs it
            raise ConversionError("no decoder tensors: pass the 'vqgan' source (--vqgan)")
        decoder, more = self.rename(tensors["vqgan"], "vqgan")
        return Converted(preset_spec(PRESET), {**ours, **decoder}, unmapped + more, PRESET)


@pytest.fixture
def families(monkeypatch):
    for family in (RenamedTiny, SplitTiny):
        monkeypatch.setitem(FAMILIES, family.name, family())


@pytest.fixture(scope="module")
def original() -> tv.Tokenizer:
    torch.manual_seed(0)
    return tv.create_tokenizer(PRESET).eval()


def published(tok: tv.Tokenizer, only: str | None = None, skip: str | None = None) -> dict:
    """The tokenizer's tensors in the test families' names (`only` / `skip` a key prefix)."""
    return {
        "net/" + k.replace(".", "/"): v.clone()
        for k, v in tok.state_dict().items()
        if (only is None or k.startswith(only)) and (skip is None or not k.startswith(skip))
    }


def write(path: Path, tensors: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path


def cli(*args, capsys) -> tuple[int, str, str]:
    code = vistok(["convert", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_same_model(directory: Path, tok: tv.Tokenizer) -> None:
    loaded = tv.Tokenizer.from_pretrained(directory)
    theirs, ours = loaded.state_dict(), tok.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(loaded.encode(images).ids, tok.encode(images).ids)


def no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("layout", ["safetensors", "bin", "state_dict", "model"])
def test_converts_every_published_layout(layout, families, original, tmp_path, capsys):
    tensors = published(original)
    if layout in ("state_dict", "model"):  # a training script's nesting, beside other entries
        tensors = {layout: tensors, "epoch": 3, "step": torch.tensor(7)}
    suffix = ".safetensors" if layout == "safetensors" else ".bin"
    src = write(tmp_path / "pub" / f"weights{suffix}", tensors)
    code, out, err = cli("renamed_tiny", src, tmp_path / "out", capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'out'}"
    assert_same_model(tmp_path / "out", original)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    extra = json.loads((tmp_path / "out" / "config.json").read_text())["extra"]["converted_from"]
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert extra == {
        "family": "renamed_tiny",
        "preset": PRESET,
        "sources": {"model": {"file": src.name, "sha256": digest}},
    }
    no_leftovers(tmp_path)


def test_python_api_and_config_beside_the_checkpoint(families, original, tmp_path):
    src = write(tmp_path / "repo" / "model.safetensors", published(original))
    (tmp_path / "repo" / "config.json").write_text(json.dumps({"num_latent_tokens": 16}))
    # The published config says K = 16, the tensors are K = 8: the family's spec is refused.
    with pytest.raises(
        ConversionError,
        match=r"wrongly shaped .*encoder\.latent_tokens \[1, 8, 32\] != \[1, 16, 32\]",
    ):
        tv.convert("renamed_tiny", tmp_path / "repo", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    right = tmp_path / "right.json"
    right.write_text(json.dumps({"num_latent_tokens": 8}))
    out = tv.convert("renamed_tiny", src.parent, tmp_path / "out", config=right)
    assert out == tmp_path / "out"
    assert_same_model(out, original)
    sources = json.loads((out / "config.json").read_text())["extra"]["converted_from"]["sources"]
    assert sources["config"]["file"] == "right.json"
    assert sources["config"]["sha256"] == hashlib.sha256(right.read_bytes()).hexdigest()


def test_second_source_file(families, original, tmp_path, capsys):
    model = write(tmp_path / "model.bin", published(original, skip="decoder."))
    vqgan = write(tmp_path / "vqgan.safetensors", published(original, only="decoder."))
    code, _, err = cli("split_tiny", model, tmp_path / "out", "--vqgan", vqgan, capsys=capsys)
    assert code == 0, err
    assert_same_model(tmp_path / "out", original)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["extra"]["converted_from"]["sources"]["vqgan"]["file"] == "vqgan.safetensors"


class Reduce:
    """A pickle whose loading would create a file: what weights_only loading must refuse."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _malicious(tmp_path: Path) -> Path:
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps({"net/x": Reduce(tmp_path / "pwned")}, protocol=2))
    return path


def _truncated(tmp_path: Path, original, suffix: str) -> Path:
    path = write(tmp_path / f"cut{suffix}", published(original))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _edited(tmp_path: Path, original) -> Path:
    tensors = published(original)
    del tensors["net/decoder/token_in/weight"]  # missing
    tensors["net/encoder/extra"] = torch.zeros(2)  # unexpected in our names
    tensors["opt_state"] = torch.zeros(1)  # unmapped by the family
    tensors["net/encoder/latent_tokens"] = torch.zeros(1, 9, 32)  # wrongly shaped
    key = next(k for k in tensors if k.endswith("encoder/to_codes/weight"))
    tensors[key] = tensors[key].to(torch.int32)  # wrongly typed
    return write(tmp_path / "edited.safetensors", tensors)


# (family, files to make -> [src, extra args...], what the one-line message must say)
BAD_INPUTS = {
    "wrong family": (
        "renamed_tiny",
        lambda t, o: [write(t / "ours.safetensors", o.state_dict())],
        r"ours\.safetensors: no net/ tensors: not a renamed_tiny checkpoint",
    ),
    "truncated safetensors": (
        "renamed_tiny",
        lambda t, o: [_truncated(t, o, ".safetensors")],
        r"model file \S*cut\.safetensors is not a readable safetensors file: the tensors span",
    ),
    "truncated torch file": (
        "renamed_tiny",
        lambda t, o: [_truncated(t, o, ".bin")],
        r"cut\.bin is not a PyTorch state dict that loads without running code \(torch\.load "
        r"weights_only\): truncated or damaged",
    ),
    "text file": (
        "renamed_tiny",
        lambda t, o: [(t / "notes.txt", (t / "notes.txt").write_text("hello"))[0]],
        r"notes\.txt is neither a safetensors file nor a PyTorch file \(it starts with b'hello'\)",
    ),
    "empty file": (
        "renamed_tiny",
        lambda t, o: [(t / "empty.bin", (t / "empty.bin").write_bytes(b""))[0]],
        r"empty\.bin is empty$",
    ),
    "not tensors": (
        "renamed_tiny",
        lambda t, o: [write(t / "nums.bin", {"net/a": torch.zeros(1), "lr": 0.1})],
        r"nums\.bin is not a plain state dict: 1 entries .* 'lr' -> float",
    ),
    "not a mapping": (
        "renamed_tiny",
        lambda t, o: [write(t / "list.pt", [torch.zeros(1)])],
        r"list\.pt holds a list, not a state dict",
    ),
    "pickle that runs code": (
        "renamed_tiny",
        lambda t, o: [_malicious(t)],
        r"evil\.bin is not a PyTorch state dict that loads without running code "
        r"\(torch\.load weights_only\): it refers to io\.open, "
        r"which no plain state dict holds \(nothing was run\)$",
    ),
    "extra, missing, misshaped, mistyped tensors": (
        "renamed_tiny",
        lambda t, o: [_edited(t, o)],
        r"edited\.safetensors cannot be converted by family 'renamed_tiny' as tiny_cpu_vq: "
        r"1 unmapped source tensors: model:opt_state; "
        r"1 missing tensors: decoder\.token_in\.weight; "
        r"1 unexpected tensors: encoder\.extra; "
        r"1 wrongly shaped tensors \(file != model\): "
        r"encoder\.latent_tokens \[1, 9, 32\] != \[1, 8, 32\]; "
        r"1 wrongly typed tensors: encoder\.to_codes\.weight torch\.int32 for torch\.float32$",
    ),
    "vqgan missing": (
        "split_tiny",
        lambda t, o: [write(t / "m.bin", published(o, skip="decoder."))],
        r"m\.bin: no decoder tensors: pass the 'vqgan' source \(--vqgan\)$",
    ),
    "vqgan not read": (
        "renamed_tiny",
        lambda t, o: [write(t / "m.bin", published(o)), "--vqgan", t / "m.bin"],
        r"family 'renamed_tiny' reads no vqgan file",
    ),
    "no such file": (
        "renamed_tiny",
        lambda t, o: [t / "absent.bin"],
        r"model file .*absent\.bin does not exist",
    ),
    "directory without a checkpoint": (
        "renamed_tiny",
        lambda t, o: [
            (t / "d", (t / "d").mkdir(), (t / "d" / "a.bin").touch(), (t / "d" / "b.bin").touch())[
                0
            ]
        ],  # fmt: skip
        r"d is a directory without one checkpoint to read \(found: a\.bin, b\.bin\)",
    ),
    "config not JSON": (
        "renamed_tiny",
        lambda t, o: [write(t / "m.bin", published(o)), "--config", t / "m.bin"],
        r"config .*m\.bin is not valid JSON",
    ),
    "config not an object": (
        "renamed_tiny",
        lambda t, o: [
            write(t / "m.bin", published(o)),
            "--config",
            (t / "c.json", (t / "c.json").write_text("[1]"))[0],
        ],  # fmt: skip
        r"c\.json holds a JSON list, not an object",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_1_and_writes_nothing(
    case, families, original, tmp_path, capsys
):
    family, make, message = BAD_INPUTS[case]
    src = tmp_path / "src"
    src.mkdir()
    first, *rest = make(src, original)
    dst = tmp_path / "out" / "model"
    code, out, err = cli(family, first, dst, *rest, capsys=capsys)
    assert code == 1, (out, err)
    assert err.startswith("vistok convert: error: ") and err.count("\n") == 1, err
    assert re.search(message, err.strip()), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (src / "pwned").exists()  # nothing in a file ran
    with pytest.raises(ConversionError):  # the API raises what the command prints
        tv.convert(family, first, dst, **_kwargs(rest))


def _kwargs(rest: list) -> dict:
    return {str(k).removeprefix("--"): v for k, v in zip(rest[::2], rest[1::2], strict=True)}


def test_destination_rules(families, original, tmp_path, capsys):
    src = write(tmp_path / "m.safetensors", published(original))
    (tmp_path / "empty").mkdir()
    assert cli("renamed_tiny", src, tmp_path / "empty", capsys=capsys)[0] == 0  # empty is fine
    code, _, err = cli("renamed_tiny", src, tmp_path / "empty", capsys=capsys)
    assert code == 1 and "exists and is not empty (pass --overwrite" in err
    before = (tmp_path / "empty" / "model.safetensors").stat().st_ino
    code, _, err = cli("renamed_tiny", src, tmp_path / "empty", "--overwrite", capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "empty" / "model.safetensors").stat().st_ino != before  # replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, _, err = cli("renamed_tiny", src, mine, "--overwrite", capsys=capsys)
    assert code == 1 and "not a vistok pretrained directory; refusing to replace it" in err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    (tmp_path / "file").write_text("x")
    code, _, err = cli("renamed_tiny", src, tmp_path / "file", "--overwrite", capsys=capsys)
    assert code == 1 and "exists and is not a directory" in err
    no_leftovers(tmp_path)


def test_failed_write_leaves_no_directory(families, original, tmp_path, monkeypatch):
    src = write(tmp_path / "m.safetensors", published(original))

    def fail(self, directory, extra=None):
        (Path(directory) / "config.json").write_text("{}")  # half written, then a crash
        raise KeyboardInterrupt

    monkeypatch.setattr(tv.Tokenizer, "save_pretrained", fail)
    with pytest.raises(KeyboardInterrupt):
        tv.convert("renamed_tiny", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    no_leftovers(tmp_path)


def test_usage_mistakes_exit_2(families, tmp_path, capsys):
    code, _, err = cli("no_such_family", tmp_path / "a", tmp_path / "b", capsys=capsys)
    assert code == 2 and "invalid choice: 'no_such_family'" in err and "renamed_tiny" in err
    with pytest.raises(ConversionError, match="unknown conversion family 'x'; known: .*split_"):
        tv.convert("x", tmp_path / "a", tmp_path / "b")
    assert callable(tv.convert) and tv.convert.convert is tv.convert.api.convert


# The Hugging Face cache, laid out as huggingface_hub lays it out ----------------------------
REVISION = "0123456789abcdef0123456789abcdef01234567"


def cached(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """models--owner--name/{refs/main, snapshots/<rev>/FILES} under `cache`."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_CACHE under tmp_path, HF_HUB_OFFLINE set, and any network connection an error."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return cache


def test_from_pretrained_by_cached_repo_id(original, offline, tmp_path, monkeypatch):
    local = original.save_pretrained(tmp_path / "saved")
    files = {n: (local / n).read_bytes() for n in ("config.json", "model.safetensors")}
    cached(offline, "someone/tiny", files)
    assert_same_model("someone/tiny", original)
    assert_same_model("someone/tiny@" + REVISION, original)
    with pytest.raises(PretrainedError) as info:
        tv.Tokenizer.from_pretrained("someone/absent")
    message = str(info.value)
    assert "someone/absent is neither a local directory nor a repository in the Hugging Face" in (
        message
    )
    assert str(offline / "models--someone--absent") in message
    assert "hf download someone/absent" in message
    cached(offline, "someone/half", {"config.json": files["config.json"]})
    with pytest.raises(PretrainedError, match=r"snapshot .* lacks model\.safetensors"):
        tv.Tokenizer.from_pretrained("someone/half")
    # HF_HOME is where huggingface_hub looks without HF_HUB_CACHE: its "hub" folder.
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(offline.parent))
    assert_same_model("someone/tiny", original)
    # A local directory of the same name wins over the cache.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "someone").mkdir()
    tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path / "someone" / "tiny")
    assert tv.Tokenizer.from_pretrained("someone/tiny").config["quantizer"]["name"] == "fsq"


def test_convert_from_cached_repo_id(families, original, offline, tmp_path, capsys):
    path = write(tmp_path / "up" / "model.safetensors", published(original))
    cached(offline, "lab/tiny-published", {"model.safetensors": path.read_bytes()})
    code, _, err = cli("renamed_tiny", "lab/tiny-published", tmp_path / "out", capsys=capsys)
    assert code == 0, err
    assert_same_model(tmp_path / "out", original)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["extra"]["converted_from"]["sources"]["model"] == {
        "file": "model.safetensors",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "repo": "lab/tiny-published",
        "revision": REVISION,
    }
    code, _, err = cli("renamed_tiny", "lab/not-downloaded", tmp_path / "o2", capsys=capsys)
    assert code == 1 and err.count("\n") == 1
    assert "lab/not-downloaded is neither a local directory nor a repository" in err
    assert "hf download lab/not-downloaded" in err and not (tmp_path / "o2").exists()


# The real families, end to end through the command ----------------------------------------
@pytest.mark.parametrize(
    ("family", "name"),
    [("titok", "titok_legacy"), ("titok", "titok_vq8k"), ("one_d_piece", "one_d_piece_legacy")],
)
def test_published_families_through_the_command(family, name, tmp_path, capsys):
    """The golden fixtures' reference weights, written as their publishers write them (a torch
    state dict, the VQGAN in its own file, config.json beside), converted by `vistok convert`:
    the directory encodes to the ids the reference computed."""
    from test_golden_titok import load

    sources, rest, meta = load(name)
    repo = tmp_path / "download"
    write(repo / "pytorch_model.bin", sources["model"])
    (repo / "config.json").write_text(json.dumps(meta["config"]))
    extra = []
    if "vqgan" in sources:
        extra = ["--vqgan", write(tmp_path / "maskgit-vqgan.bin", sources["vqgan"])]
    code, _, err = cli(family, repo, tmp_path / "out", *extra, capsys=capsys)
    assert code == 0, err
    tok = tv.Tokenizer.from_pretrained(tmp_path / "out")
    ids = tok.encode(rest["images"] * 2 - 1).ids  # (b n 1)
    assert torch.equal(ids[..., 0], rest["out:ids"][:, 0])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert set(config["extra"]["converted_from"]["sources"]) == {"model", "config"} | (
        {"vqgan"} if extra else set()
    )
    if extra:  # the legacy TiTok without its VQGAN file: the family says what to pass
        code, _, err = cli(family, repo, tmp_path / "again", capsys=capsys)
        assert code == 1 and "vqgan" in err and err.count("\n") == 1, err
        assert not (tmp_path / "again").exists()


def test_every_family_module_is_registered():
    assert {"titok", "one_d_piece"} <= set(FAMILIES)
    assert all(FAMILIES[name].name == name for name in FAMILIES)


def test_a_damaged_published_layout_is_a_user_error(tmp_path, capsys):
    """A real family meeting a tensor it did not expect (a TiTok checkpoint missing its patch
    embedding) answers with the input's one-line error, not a traceback."""
    from test_golden_titok import load

    sources, _, meta = load("titok_vq8k")
    del sources["model"]["encoder.patch_embed.weight"]
    src = write(tmp_path / "damaged.bin", sources["model"])
    (tmp_path / "config.json").write_text(json.dumps(meta["config"]))
    code, _, err = cli("titok", src, tmp_path / "out", capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "damaged.bin" in err and "encoder.patch_embed.weight" in err, err
    assert not (tmp_path / "out").exists()
