"""The limits table: one refusal line names the source, the limit and the flag that raises it."""

import pytest

from tokenizers_vis.limits import DEFAULT_LIMITS, LIMIT_FLAGS, LimitError, LimitWarning, check_limit


def test_every_limit_has_a_flag():
    assert set(LIMIT_FLAGS) == set(DEFAULT_LIMITS.__dataclass_fields__)


def test_refusal_names_file_limit_and_flag():
    with pytest.raises(LimitError, match=r"a\.vtok: output pixels 200,000,000 .*--max-pixels"):
        check_limit("a.vtok", "output pixels", 200_000_000, DEFAULT_LIMITS, "max_pixels")


def test_raised_limit_accepts_and_warning_above_half():
    raised = DEFAULT_LIMITS.replace(max_pixels=300_000_000)
    with pytest.warns(LimitWarning):
        check_limit("a.vtok", "output pixels", 200_000_000, raised, "max_pixels")
    check_limit("a.vtok", "output pixels", 1_000, DEFAULT_LIMITS, "max_pixels")
    with pytest.raises(TypeError):
        DEFAULT_LIMITS.replace(no_such_limit=1)


def test_flags_raise_the_limits_of_one_run():
    from tokenizers_vis.cli.common import ArgumentParser, add_limit_flags, limits_from_args

    parser = ArgumentParser()
    add_limit_flags(parser)
    assert limits_from_args(parser.parse_args([])) == DEFAULT_LIMITS
    args = parser.parse_args(["--max-pixels", "400000000", "--max-memory", "16"])
    limits = limits_from_args(args)
    assert limits.max_pixels == 400_000_000 and limits.max_work_bytes == 16 << 20
    assert limits.warn_pixels == 200_000_000
    big = limits_from_args(parser.parse_args(["--max-parameters", "16000000000"]))
    assert big.max_tensors == 2 * DEFAULT_LIMITS.max_tensors
