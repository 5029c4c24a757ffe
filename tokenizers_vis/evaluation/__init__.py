"""Evaluation as a Python API: sweeps over token counts against JPEG / WebP, and generator FID.

    from tokenizers_vis.evaluation import evaluate_tokenizer, write_report
    result = evaluate_tokenizer("emoji32", "emoji", split="test", fid=False)
    result.rows, result.codecs, result.equal_bytes()
    write_report(result, "out/eval/emoji32")

Computing (`evaluate_tokenizer`, `evaluate_generator`) and writing (`write_report`,
`write_json`, `write_markdown`) are separate; `vistok eval` is a thin layer over both.

The field's suite under a named protocol (ADM's evaluator: FID, sFID, IS, precision / recall),
streaming and resumable: `make_reference`, `evaluate_tokenizer_suite`, `evaluate_generator_suite`
(see `evaluation.suite_api`).
"""

from tokenizers_vis.evaluation.api import (
    GeneratorEvaluation,
    TokenizerEvaluation,
    evaluate_generator,
    evaluate_tokenizer,
)
from tokenizers_vis.evaluation.inputs import EvaluationError
from tokenizers_vis.evaluation.report import write_json, write_markdown, write_report
from tokenizers_vis.evaluation.suite_api import (
    SuiteEvaluation,
    evaluate_generator_suite,
    evaluate_tokenizer_suite,
    make_reference,
)

__all__ = [
    "EvaluationError",
    "GeneratorEvaluation",
    "SuiteEvaluation",
    "TokenizerEvaluation",
    "evaluate_generator",
    "evaluate_generator_suite",
    "evaluate_tokenizer",
    "evaluate_tokenizer_suite",
    "make_reference",
    "write_json",
    "write_markdown",
    "write_report",
]
