"""Encoding to a byte budget: the allocation (unit), then the shipped photo32 through the API and
`vistok encode --target-bytes / --bpp`: never over the budget, tokens where the detail is, one
line and exit 2 for budgets no file can meet."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import Codec, EncodeOptions, read_header
from tokenizers_vis.codec.allocate import allocate, lower_hull
from tokenizers_vis.codec.budget import BudgetError, k_grid, token_bits
from tokenizers_vis.codec.errors import OptionsError
from tokenizers_vis.codec.static_table import StaticTable


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


# The allocation ------------------------------------------------------------------------------
def test_lower_hull_drops_points_above_the_chord_and_points_that_buy_nothing():
    cost = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    dist = np.array([10.0, 9.5, 5.0, 6.0, 1.0])  # 1: above chord 0-2; 3: worse than 2
    assert lower_hull(cost, dist) == [0, 2, 4]


def _brute_force(cost: np.ndarray, dist: np.ndarray, budget: float) -> float:
    best = np.inf
    for pick in itertools.product(range(cost.shape[1]), repeat=cost.shape[0]):
        rows = np.arange(cost.shape[0])
        if cost[rows, pick].sum() <= budget:
            best = min(best, dist[rows, pick].sum())
    return best


def test_allocation_stays_within_budget_and_is_near_the_exhaustive_optimum():
    """Hull steps in slope order are optimal at the frontier's corners (Shoham & Gersho); in
    between, a knapsack of a few coarse steps can leave a gap, and never more than one step's."""
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(40):
        tiles, m = 4, 5
        cost = np.cumsum(rng.integers(1, 6, size=(tiles, m)), axis=1).astype(float)
        dist = np.cumsum(rng.uniform(0, 10, size=(tiles, m))[:, ::-1], axis=1)[:, ::-1]
        budget = rng.uniform(cost[:, 0].sum(), cost[:, -1].sum())
        pick = allocate(cost, dist, budget)
        rows = np.arange(tiles)
        assert cost[rows, pick].sum() <= budget
        gaps.append(dist[rows, pick].sum() / _brute_force(cost, dist, budget) - 1)
        uniform = [j for j in range(m) if cost[:, j].sum() <= budget][-1]
        assert dist[rows, pick].sum() <= dist[:, uniform].sum()  # never worse than one k
    assert np.median(gaps) == 0.0 and np.mean(gaps) < 0.05  # measured: 0.033


def test_allocation_refuses_a_budget_below_the_cheapest_points():
    with pytest.raises(ValueError, match="below"):
        allocate(np.array([[4.0, 8.0]]), np.array([[2.0, 1.0]]), 3.0)


def test_token_bits_of_a_static_table_sum_to_its_ideal_cost():
    rng = np.random.default_rng(0)
    counts = [rng.integers(0, 50, size=(8, 16)), rng.integers(0, 50, size=(8, 4))]
    table = StaticTable(counts)
    ids = np.stack([rng.integers(0, 16, (5, 8)), rng.integers(0, 4, (5, 8))], axis=-1)
    bits = token_bits(table, ids)  # (5 8)
    assert bits.shape == (5, 8) and (bits > 0).all()
    assert np.isclose(bits.sum(), table.bits(ids))
    assert np.isclose(bits[:, :3].sum(), table.bits(ids[:, :3]))  # a prefix costs its own tokens


def test_k_grid_default_and_bounds():
    assert k_grid(64).tolist() == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert k_grid(64, (5,)).tolist() == [1, 5, 64]
    with pytest.raises(OptionsError, match=r"1\.\.64"):
        k_grid(64, (0, 65))


# photo32 through the API ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def codecs() -> dict[str, Codec]:
    plain = Codec.from_pretrained("photo32", device="cpu")
    static = Codec.from_pretrained("photo32", device="cpu", entropy="static")
    return {"bit-packed": plain, "static": static}


def _half_flat(width: int, height: int) -> Image.Image:
    """The left half flat grey, the right half a cat's fur (the detailed half)."""
    cat = Image.fromarray(skimage.data.chelsea()).crop((100, 40, 296, 170))
    image = Image.new("RGB", (width, height), (120, 120, 120))
    image.paste(cat.resize((width // 2, height), Image.Resampling.LANCZOS), (width // 2, 0))
    return image


@pytest.fixture(scope="module")
def half_flat() -> Image.Image:
    """64x32: two 32 px tiles, the left flat, the right detailed."""
    return _half_flat(64, 32)


@pytest.mark.parametrize(
    "coding, budgets", [("bit-packed", (40, 61, 97, 150, 233)), ("static", (60, 97, 150, 233))]
)
def test_files_never_exceed_the_budget_and_grow_with_it(codecs, coding, budgets):
    # 6 tiles, a coarse grid (4 decoder passes) to keep it fast; the default grid is below.
    image = _half_flat(96, 64)
    codec, source = codecs[coding], np.asarray(image, dtype=np.float64)
    sizes, errors = [], []
    for budget in budgets:
        data = codec.encode_image(image, target_bytes=budget, k_grid=(4, 16))
        assert len(data) <= budget
        decoded = np.asarray(codec.decode_bytes(data), dtype=np.float64)
        sizes.append(len(data))
        errors.append(np.mean((decoded - source) ** 2))
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]
    assert errors[-1] < errors[0]  # more bytes, less error


def test_the_detailed_half_gets_more_tokens_than_the_flat_half(codecs, half_flat):
    for coding, budget in (("bit-packed", 100), ("static", 90)):
        data = codecs[coding].encode_image(half_flat, target_bytes=budget)
        flat, detailed = read_header(data)[0].lengths
        assert len(data) <= budget and detailed > flat, (coding, flat, detailed)


def test_a_budget_above_k_everywhere_gives_each_tile_its_least_error_k(codecs, half_flat):
    codec = codecs["bit-packed"]
    full = codec.encode_image(half_flat)
    source = np.asarray(half_flat, dtype=np.float64)
    error = lambda data: np.mean((np.asarray(codec.decode_bytes(data)) - source) ** 2)  # noqa: E731
    (encoded,) = codec.encode_images([half_flat], EncodeOptions(target_bytes=len(full) + 500))
    assert encoded.capped and len(encoded.data) <= len(full)
    assert error(encoded.data) <= error(full)


def test_a_budget_below_one_token_per_tile_is_refused(codecs, half_flat):
    codec = codecs["bit-packed"]
    smallest = codec.encode_image(half_flat, num_tokens=1)
    assert len(codec.encode_image(half_flat, target_bytes=len(smallest))) == len(smallest)
    with pytest.raises(BudgetError, match=f"smallest file .*{len(smallest)} bytes"):
        codec.encode_image(half_flat, target_bytes=len(smallest) - 1)
    with pytest.raises(BudgetError, match="overhead"):
        codec.encode_image(half_flat, target_bytes=10)


def test_budget_options_are_exclusive_and_checked(codecs, half_flat):
    codec = codecs["bit-packed"]
    for options in ({"target_bytes": 100, "bpp": 0.5}, {"target_bytes": 100, "num_tokens": 4}):
        with pytest.raises(OptionsError, match="not both"):
            codec.encode_image(half_flat, **options)
    for options in ({"target_bytes": 0}, {"bpp": -0.1}, {"target_bytes": 90, "k_grid": (65,)}):
        with pytest.raises(OptionsError):
            codec.encode_image(half_flat, **options)


# The command ----------------------------------------------------------------------------------
def _vistok(capsys, *argv) -> tuple[int, str, str]:
    status = vistok([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_bpp_is_target_bytes_of_bpp_times_pixels_over_8(tmp_path, capsys, half_flat):
    src = tmp_path / "half.png"
    half_flat.save(src)
    bpp = 0.69  # 64 * 32 * 0.69 / 8 = 176.64 -> 176 bytes
    common = ["encode", src, "--model", "photo32", "-q", "--entropy", "static", "-o"]
    assert _vistok(capsys, *common, tmp_path / "a.vtok", "--bpp", bpp)[0] == 0
    assert _vistok(capsys, *common, tmp_path / "b.vtok", "--target-bytes", 176)[0] == 0
    a, b = (tmp_path / "a.vtok").read_bytes(), (tmp_path / "b.vtok").read_bytes()
    assert a == b and len(a) <= 176


@pytest.mark.parametrize(
    "flags, reason",
    [
        (["--target-bytes", "12"], "overhead"),
        (["--target-bytes", "30"], "smallest file"),
        (["--bpp", "0.001"], "below"),
        (["--target-bytes", "0"], "--target-bytes"),
        (["--bpp", "0"], "--bpp must be > 0"),
        (["--target-bytes", "99", "--target-psnr", "20"], "not allowed with"),
        (["--target-bytes", "99", "--k-grid", "3,70"], "--k-grid values must be in 1..64"),
        (["--k-grid", "4"], "--k-grid needs --target-bytes or --bpp"),
    ],
)
def test_cli_bad_budgets_are_one_line_exit_2_and_write_nothing(
    tmp_path, capsys, half_flat, flags, reason
):
    src = tmp_path / "half.png"
    half_flat.save(src)
    status, _, err = _vistok(capsys, "encode", src, "--model", "photo32", "-q", *flags)
    assert status == 2
    assert reason in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.png"]
