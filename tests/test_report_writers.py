"""The two report writers (the per-k sweep and the protocol suite) share one column list, one
table writer and one extractor line: a metric or provenance detail added to one shows in both."""

from __future__ import annotations

from tokenizers_vis.evaluation.report import METRICS, generator_markdown, main_table
from tokenizers_vis.evaluation.suite_report import suite_markdown, suite_table

EXTRACTOR = {"id": "tf_inception_v3/pool3/x", "weights": "/w/default_1.pt", "sha1": "ab" * 20}


def _suite(kind: str, rows: list[dict]) -> dict:
    meta = {"images": 3, "listed": 3, "failed": 0, "extractor": EXTRACTOR, "samples": "s.npz",
            "model": {"name": "m"}}  # fmt: skip
    protocol = {"name": "imagenet256", "image_size": 256, "preprocessing": "crop"}
    return {"kind": kind, "protocol": protocol, "rows": rows, "meta": meta}


def test_per_k_tables_are_one_writer_in_metrics_order():
    rows = [
        {"k": 1, "bytes_per_image": 1.5, "psnr": 14.551, "rfid": 99.0, "precision": 0.5},
        {"k": 2, "bytes_per_image": 3.0, "psnr": 15.6, "rfid": 90.0, "precision": None},
    ]
    sweep = main_table({"vistok": rows})
    suite = suite_table(_suite("tokenizer", [*rows, {"k": "original", "psnr": 0.0}]))
    assert sweep.split("\n", 2)[2] == suite  # the same table under the sweep's title
    assert suite.splitlines()[0] == "| k | bytes | rFID | Prec. | PSNR |"
    assert "| 1 | 1.5 | 99.00 | 0.500 | 14.55 |" in suite and "| 2 | 3.0 | 90.00 | – |" in suite
    titles = [t for _, t, _ in METRICS]
    assert titles.index("rFID") < titles.index("Prec.") < titles.index("PSNR")


def test_every_report_names_its_extractor_with_one_line():
    ex = EXTRACTOR
    line = f"- extractor: `{ex['id']}` (weights `{ex['weights']}`, sha1 `{ex['sha1']}`)"
    generator = {"meta": {"data": "emoji", "split": "test", "num_images": 3,
                          "extractor": EXTRACTOR},
                 "samples": {"num_samples": 3, "path": "s.npz"}, "reference_size": 32,
                 "gfid": 1.0, "kid_mean": 0.0, "kid_std": 0.0}  # fmt: skip
    gen_row = _suite("generator", [{"fid": 1.0}])
    assert line in generator_markdown(generator).splitlines()
    assert line in suite_markdown(gen_row).splitlines()
    assert "| FID |" in suite_markdown(gen_row)
