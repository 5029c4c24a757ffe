"""`PretrainedMixin`: constructor arguments captured once as `config`, and every shipped
directory saves back to the `config.json` it was loaded from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tokenizers_vis as tv
from generation import GPT
from tokenizers_vis.hub import FORMAT_VERSION, PretrainedMixin

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(PretrainedMixin, nn.Module):
    pretrained_kind = "toy"
    shipped_dir = Path("/nonexistent")

    def __init__(self, sizes: list[int], width: int = 4, spec: dict | None = None) -> None:
        super().__init__()
        sizes.append(99)  # a body that changes what it was given must not change the config
        self.proj = nn.Linear(width, len(sizes))


class WiderToy(Toy):
    def __init__(self, depth: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.depth = depth


def test_config_is_the_outermost_call_with_defaults_as_json() -> None:
    toy = Toy([np.int64(3), 5], spec={"name": "x", "levels": (8, 5)})
    assert toy.config == {"sizes": [3, 5], "width": 4, "spec": {"name": "x", "levels": [8, 5]}}
    assert type(toy.config["sizes"][0]) is int
    wider = WiderToy(sizes=[1], width=6)
    assert wider.config == {"depth": 2, "sizes": [1], "width": 6}  # not the parent's call
    spec = {"name": "x", "levels": [8]}
    toy = Toy([2], spec=spec)
    spec["levels"].append(7)  # the config is a copy
    assert toy.config["spec"] == {"name": "x", "levels": [8]}


def test_positional_only_constructors_are_refused() -> None:
    with pytest.raises(TypeError, match="no \\*args"):

        class Bad(PretrainedMixin, nn.Module):
            def __init__(self, *sizes: int) -> None:
                super().__init__()


def test_toy_round_trip(tmp_path: Path) -> None:
    toy = WiderToy(depth=3, sizes=[2], width=5)
    toy.save_pretrained(tmp_path / "toy", extra={"note": "n"})
    loaded = WiderToy.from_pretrained(tmp_path / "toy")
    assert loaded.config == toy.config and loaded.depth == 3
    assert torch.equal(loaded.proj.weight, toy.proj.weight)
    config = json.loads((tmp_path / "toy" / "config.json").read_text())
    assert config["kind"] == "toy" and config["toy"] == toy.config


def test_tokenizer_default_token_drop_is_saved_as_a_dict() -> None:
    spec = tv.preset_spec("tiny_cpu_fsq")
    del spec["token_drop"]
    assert tv.Tokenizer(**spec).config["token_drop"] == {"name": "nested_dropout"}


SHIPPED = [(tv.Tokenizer, name) for name in tv.Tokenizer.list_pretrained()] + [
    (GPT, name) for name in GPT.list_pretrained()
]


@pytest.mark.parametrize(("cls", "name"), SHIPPED, ids=[n for _, n in SHIPPED])
def test_shipped_directories_save_back_to_their_config(cls, name: str, tmp_path: Path) -> None:
    found = cls.open_pretrained(name)
    model = cls.from_pretrained(found)
    upgraded = cls.upgrade_spec(found.spec, found.version)  # format 1 names, in today's terms
    assert model.config == upgraded
    model.save_pretrained(tmp_path, extra=found.config.get("extra"))
    saved = json.loads((tmp_path / "config.json").read_text())
    shipped = {**found.config, "format_version": FORMAT_VERSION, cls.pretrained_kind: upgraded}
    if "kind" not in found.config:  # saved before directories named their kind
        del saved["kind"]
    assert saved == shipped
