"""NPZ data contract: round trip, FORMAT-001, bad input, grouping and normalisation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ptycho.raw_data import (
    DataContractError,
    RawData,
    detect_diffraction_layout,
    diffraction_shape,
    group_neighbors,
    normalization_scale,
    npz_headers,
    write_npz_deterministic,
)


def _arrays(n=20, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "diffraction": rng.random((n, size, size)).astype(np.float32),
        "probeGuess": (rng.random((size, size)) + 1j).astype(np.complex64),
        "xcoords": rng.uniform(20, 60, n),
        "ycoords": rng.uniform(20, 60, n),
    }


def _write(tmp_path: Path, name="d.npz", **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_round_trip_keeps_arrays_and_metadata(tmp_path):
    arrays = _arrays()
    raw = RawData(**arrays, objectGuess=np.ones((80, 80), np.complex64), metadata={"nphotons": 1e4})
    path = raw.to_file(tmp_path / "r.npz")
    back = RawData.from_file(path)
    np.testing.assert_array_equal(back.diffraction, arrays["diffraction"])
    np.testing.assert_array_equal(back.probeGuess, arrays["probeGuess"])
    np.testing.assert_array_equal(back.xcoords, arrays["xcoords"])
    assert back.metadata["nphotons"] == 1e4 and back.metadata["schema_version"] == 1
    assert back.objectGuess.shape == (80, 80)


def test_to_file_bytes_are_deterministic(tmp_path):
    raw = RawData(**_arrays())
    a = raw.to_file(tmp_path / "a.npz").read_bytes()
    b = raw.to_file(tmp_path / "b.npz").read_bytes()
    assert a == b


def test_legacy_diff3d_key_is_accepted(tmp_path):
    arrays = _arrays()
    arrays["diff3d"] = arrays.pop("diffraction")
    raw = RawData.from_file(_write(tmp_path, **arrays))
    assert raw.diffraction.shape == (20, 32, 32)


def test_legacy_layout_is_transposed_with_warning(tmp_path, caplog):
    arrays = _arrays(n=20)
    canonical = arrays["diffraction"]
    arrays["diffraction"] = np.transpose(canonical, (1, 2, 0))
    path = _write(tmp_path, **arrays)
    with caplog.at_level(logging.WARNING, logger="ptycho.raw_data"):
        raw = RawData.from_file(path)
    np.testing.assert_array_equal(raw.diffraction, canonical)
    assert "FORMAT-001" in caplog.text and str(path) in caplog.text
    assert diffraction_shape(path) == (20, 32, 32)


@pytest.mark.parametrize(
    "shape, n, expected",
    [
        ((100, 64, 64), None, "canonical"),
        ((64, 64, 100), None, "legacy"),
        ((64, 64, 64), None, "ambiguous"),
        ((64, 64, 64), 64, "ambiguous"),
        ((65, 64, 64), None, "canonical"),
        ((64, 64, 1087), 1087, "legacy"),
        ((64, 64, 100), 7, "ambiguous"),
        ((64, 64), None, "ambiguous"),
    ],
)
def test_detect_layout(shape, n, expected):
    assert detect_diffraction_layout(shape, n) == expected


def test_npz_headers_reads_shapes_without_loading(tmp_path):
    path = _write(tmp_path, **_arrays(n=7))
    headers = npz_headers(path)
    assert headers["diffraction"] == ((7, 32, 32), np.dtype(np.float32))
    assert headers["xcoords"][0] == (7,)


def _expect_error(path: Path, key: str | None, *fragments: str):
    with pytest.raises(DataContractError) as err:
        RawData.from_file(path)
    msg = str(err.value)
    assert str(path) in msg
    if key is not None:
        assert f"key '{key}'" in msg
    for fragment in fragments:
        assert fragment in msg
    return msg


def test_missing_required_key(tmp_path):
    arrays = _arrays()
    del arrays["probeGuess"]
    _expect_error(_write(tmp_path, **arrays), "probeGuess", "missing")


def test_missing_diffraction(tmp_path):
    arrays = _arrays()
    del arrays["diffraction"]
    _expect_error(_write(tmp_path, **arrays), "diffraction", "'diffraction' or legacy 'diff3d'")


def test_wrong_rank(tmp_path):
    arrays = _arrays()
    arrays["diffraction"] = arrays["diffraction"][0]
    _expect_error(_write(tmp_path, **arrays), "diffraction", "3-D stack", "(32, 32)")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_diffraction(tmp_path, bad):
    arrays = _arrays()
    arrays["diffraction"][3, 4, 5] = bad
    _expect_error(_write(tmp_path, **arrays), "diffraction", "finite", "NaN or Inf")


def test_non_finite_coordinates(tmp_path):
    arrays = _arrays()
    arrays["ycoords"][2] = np.nan
    _expect_error(_write(tmp_path, **arrays), "ycoords", "finite")


def test_negative_amplitudes(tmp_path):
    arrays = _arrays()
    arrays["diffraction"][0, 0, 0] = -0.5
    _expect_error(_write(tmp_path, **arrays), "diffraction", "non-negative", "-0.5")


def test_coordinate_count_mismatch(tmp_path):
    arrays = _arrays()
    arrays["xcoords"] = arrays["xcoords"][:-3]
    _expect_error(_write(tmp_path, **arrays), "xcoords", "20 coordinates", "17")


def test_non_square_patterns(tmp_path):
    arrays = _arrays()
    arrays["diffraction"] = arrays["diffraction"][:, :, :30]
    _expect_error(_write(tmp_path, **arrays), "diffraction", "square")


def test_complex_diffraction(tmp_path):
    arrays = _arrays()
    arrays["diffraction"] = arrays["diffraction"].astype(np.complex64)
    _expect_error(_write(tmp_path, **arrays), "diffraction", "real amplitudes", "complex")


def test_probe_shape_mismatch(tmp_path):
    arrays = _arrays()
    arrays["probeGuess"] = arrays["probeGuess"][:16, :16]
    _expect_error(_write(tmp_path, **arrays), "probeGuess", "(32, 32)")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    _expect_error(path, None, "empty file")


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("this is not an archive")
    _expect_error(path, None, "NPZ")


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.npz", None, "no such file")


def test_truncated_archive(tmp_path):
    good = _write(tmp_path, **_arrays()).read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(good[: len(good) // 2])
    _expect_error(path, None)


def test_bad_metadata_json(tmp_path):
    arrays = _arrays()
    arrays["_metadata"] = np.array("{not json")
    _expect_error(_write(tmp_path, **arrays), "_metadata", "JSON")


def test_errors_are_value_errors():
    assert issubclass(DataContractError, ValueError)


# ----------------------------------------------------------------------------- grouping


def _grid(n_side=6, step=5.0):
    g = np.arange(n_side) * step
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel()], axis=1)


def test_gridsize_one_keeps_every_position():
    idx, off = group_neighbors(_grid(), gridsize=1, neighbor_count=1)
    assert idx.shape == (36, 1) and np.array_equal(idx[:, 0], np.arange(36))
    assert np.all(off == 0)


def test_groups_are_neighbours_and_deterministic():
    pos = _grid()
    a_idx, a_off = group_neighbors(pos, gridsize=2, neighbor_count=6, seed=3)
    b_idx, _ = group_neighbors(pos, gridsize=2, neighbor_count=6, seed=3)
    c_idx, _ = group_neighbors(pos, gridsize=2, neighbor_count=6, seed=4)
    assert a_idx.shape == (36, 4) and a_off.shape == (36, 4, 2)
    assert np.array_equal(a_idx, b_idx) and not np.array_equal(a_idx, c_idx)
    assert all(len(set(row)) == 4 for row in a_idx)
    # every member lies within the 6 nearest neighbours of the anchor (step 5 -> within ~2 steps)
    spread = np.linalg.norm(pos[a_idx] - pos[a_idx[:, :1]], axis=-1)
    assert spread.max() <= 2 * 5.0 + 1e-9
    np.testing.assert_allclose(a_off.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(pos[a_idx] - pos[a_idx].mean(axis=1, keepdims=True), a_off)


def test_n_groups_subsamples_with_seed():
    idx, _ = group_neighbors(_grid(), gridsize=2, neighbor_count=4, n_groups=10, seed=1)
    assert idx.shape == (10, 4)


def test_too_few_neighbours_and_positions():
    with pytest.raises(ValueError, match="neighbor_count: expected at least gridsize\\*\\*2 = 9"):
        group_neighbors(_grid(), gridsize=3, neighbor_count=4)
    with pytest.raises(ValueError, match="needs at least 9 scan positions, the data has 4"):
        group_neighbors(_grid(n_side=2), gridsize=3, neighbor_count=9)


def test_normalisation_sets_mean_energy():
    rng = np.random.default_rng(0)
    amp = rng.random((10, 64, 64)) * 30
    scaled = amp * normalization_scale(amp)
    assert np.mean(np.sum(scaled**2, axis=(1, 2))) == pytest.approx((64 / 2) ** 2)
    with pytest.raises(ValueError, match="all patterns are zero"):
        normalization_scale(np.zeros((2, 8, 8)))


def test_write_npz_deterministic_is_atomic(tmp_path):
    path = write_npz_deterministic(tmp_path / "x.npz", {"a": np.arange(3)})
    assert path.exists() and not (tmp_path / "x.npz.tmp").exists()
    with np.load(path) as data:
        assert list(data["a"]) == [0, 1, 2]
