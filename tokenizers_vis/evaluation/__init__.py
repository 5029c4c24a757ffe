"""Evaluation as a Python API: sweeps over token counts against JPEG / WebP, and generator FID.

    from tokenizers_vis.evaluation import evaluate_tokenizer, write_report
    result = evaluate_tokenizer("emoji32", "emoji", split="test", fid=False)
    result.rows, result.codecs, result.equal_bytes()
    write_report(result, "out/eval/emoji32")

Computing (`evaluate_tokenizer`, `evaluate_generator`) and writing (`write_report`,
`write_json`, `write_markdown`) are separate; `vistok eval` is a thin layer over both.
"""

from tokenizers_vis.evaluation.api import (
    GeneratorEvaluation,
    TokenizerEvaluation,
    evaluate_generator,
    evaluate_tokenizer,
)
from tokenizers_vis.evaluation.inputs import EvaluationError
from tokenizers_vis.evaluation.report import write_json, write_markdown, write_report

__all__ = [
    "EvaluationError",
    "GeneratorEvaluation",
    "TokenizerEvaluation",
    "evaluate_generator",
    "evaluate_tokenizer",
    "write_json",
    "write_markdown",
    "write_report",
]
