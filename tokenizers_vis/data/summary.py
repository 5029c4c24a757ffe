"""What a data set holds: images per split and per class, and a contact sheet of some of them
(`vistok data summary / show` print and save these; `vistok demo` puts them in its report)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenizers_vis.data.errors import MissingDataError

__all__ = ["SPLITS", "DataSummary", "contact_sheet", "label_counts", "summarize"]

SPLITS = ("train", "val", "test")


def label_counts(dataset: Any) -> Counter[int] | None:
    """Images per label, or None when the data set has no labels to count cheaply."""
    import webdataset as wds

    from tokenizers_vis.data.shards import ShardDataset

    if hasattr(dataset, "labels"):
        return Counter(int(v) for v in dataset.labels)
    if isinstance(dataset, ShardDataset):  # read only the .cls members, no image decoding
        pipe = wds.DataPipeline(wds.SimpleShardList(dataset.urls), wds.tarfile_to_samples())
        return Counter(int(s["cls"]) for s in pipe)
    return None


@dataclass
class DataSummary:
    """Images per split (the splits that exist) and per class (when every split has labels)."""

    spec: str
    size: int
    counts: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, Counter[int] | None] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary as a plain-text table: a row per split, then a row per class."""
        out = [f"{self.spec}  size {self.size}", f"{'split':<8}{'count':>8}"]
        out += [f"{split:<8}{n:>8}" for split, n in self.counts.items()]
        names, columns = self.class_names, self.per_class.values()
        if names and all(c is not None for c in columns):
            width = max(12, *map(len, names)) + 2
            out.append("\n" + f"{'class':<{width}}" + "".join(f"{s:>8}" for s in self.per_class))
            for i, name in enumerate(names):
                out.append(f"{name:<{width}}" + "".join(f"{c[i]:>8}" for c in columns))
        return out


def summarize(spec: str, size: int, build: Callable[[str], Any]) -> DataSummary:
    """Count the images of every split `build(split)` gives (a split without files is left out).

    Raises:
        MissingDataError: no split has any data.
    """
    summary, missing = DataSummary(spec, size), None
    for split in SPLITS:
        try:
            dataset = build(split)
        except FileNotFoundError as err:
            missing = missing or err
            continue  # e.g. shards packed for some splits only
        counts = label_counts(dataset)
        summary.counts[split] = sum(counts.values()) if counts is not None else len(dataset)
        summary.per_class[split] = counts
        summary.class_names = summary.class_names or list(getattr(dataset, "class_names", []))
    if not summary.counts:
        raise missing or MissingDataError(f"no data found for {spec}")
    return summary


def contact_sheet(dataset: Any, count: int, nrow: int) -> tuple[bytes, int]:
    """`count` images spread evenly over a data set (a stream's first ones), `nrow` a row;
    returns the sheet as PNG bytes and how many images it holds."""
    import io

    import torch
    import torchvision

    from tokenizers_vis.data.transforms import to_pil

    if hasattr(dataset, "__len__"):
        step = max(1, len(dataset) // count)
        images = [dataset[i][0] for i in range(0, len(dataset), step)][:count]
    else:
        images = [x for x, _ in zip((x for x, _ in dataset), range(count), strict=False)]
    grid = torchvision.utils.make_grid(torch.stack(images), nrow=nrow, padding=2, pad_value=1)
    buffer = io.BytesIO()
    to_pil(grid).save(buffer, format="PNG")  # (3 H W) -> RGB
    return buffer.getvalue(), len(images)
