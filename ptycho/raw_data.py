"""The NPZ data contract, FORMAT-001 layout detection, neighbour grouping and normalisation.

Every reader of diffraction stacks goes through :func:`canonical_diffraction` (and the header-only
:func:`npz_headers` for large files), so the legacy (H, W, n) layout is handled in one place.
Bad input raises :class:`DataContractError` naming the file, the key, what was expected and what was
found — never a bare IndexError deep in a model.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.lib import format as npy_format

from ptycho import params

__all__ = [
    "DataContractError",
    "SCHEMA_VERSION",
    "RawData",
    "GroupedData",
    "npz_headers",
    "detect_diffraction_layout",
    "canonical_diffraction",
    "group_neighbors",
    "normalization_scale",
    "generate_grouped_data",
    "write_npz_deterministic",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DIFFRACTION_KEYS = ("diffraction", "diff3d")
Layout = Literal["canonical", "legacy", "ambiguous"]


class DataContractError(ValueError):
    """An NPZ file breaks the data contract; the message names file, key, expected and found."""

    def __init__(self, path: Path | str | None, key: str | None, expected: str, found: str):
        self.path, self.key, self.expected, self.found = path, key, expected, found
        where = f"{path}" if path is not None else "<array>"
        if key is not None:
            where += f": key '{key}'"
        super().__init__(f"{where}: expected {expected}, found {found}")


# --------------------------------------------------------------------------- FORMAT-001


def detect_diffraction_layout(shape: tuple[int, ...], n_positions: int | None = None) -> Layout:
    """Classify a diffraction stack's shape as canonical (n, H, W) or legacy (H, W, n).

    Square patterns decide it: canonical when the last two axes are equal, legacy when the first
    two are; the number of scan positions, when known, must match the stack axis. Anything that
    fits both or neither is ambiguous and left alone (the count check then reports it).
    """
    if len(shape) != 3:
        return "ambiguous"
    a, b, c = shape
    canonical = b == c and (n_positions is None or a == n_positions)
    legacy = a == b and (n_positions is None or c == n_positions)
    if canonical and not legacy:
        return "canonical"
    if legacy and not canonical:
        return "legacy"
    return "ambiguous"


def canonical_diffraction(
    stack: np.ndarray, n_positions: int | None = None, source: Path | str | None = None
) -> np.ndarray:
    """Return the stack as (n, H, W), transposing a legacy (H, W, n) stack with a logged warning."""
    layout = detect_diffraction_layout(stack.shape, n_positions)
    if layout == "legacy":
        log.warning(
            "FORMAT-001: %s: diffraction stack has legacy layout (H, W, n) = %s; transposing to (n, H, W)",
            source if source is not None else "<array>",
            stack.shape,
        )
        return np.ascontiguousarray(np.transpose(stack, (2, 0, 1)))
    return stack


def npz_headers(path: Path | str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of every array in an NPZ, read from the .npy headers alone (no data),
    checked against the file and the memory budget (:mod:`ptycho.npz_limits`)."""
    from ptycho.npz_limits import check_npz

    path = Path(path)
    if not path.exists():
        raise DataContractError(path, None, "an existing NPZ file", "no such file")
    if path.is_dir():
        raise DataContractError(path, None, "an NPZ file", "a directory")
    return check_npz(path)


def diffraction_shape(path: Path | str) -> tuple[int, int, int]:
    """Canonical (n, H, W) shape of a file's diffraction stack without loading it."""
    headers = npz_headers(path)
    key = next((k for k in DIFFRACTION_KEYS if k in headers), None)
    if key is None:
        raise DataContractError(path, "diffraction", "a diffraction stack ('diffraction' or legacy 'diff3d')", "no such key")
    shape = headers[key][0]
    if len(shape) != 3:
        raise DataContractError(path, key, "a 3-D stack (n, H, W)", f"shape {shape}")
    n_positions = headers["xcoords"][0][0] if "xcoords" in headers and len(headers["xcoords"][0]) == 1 else None
    if detect_diffraction_layout(shape, n_positions) == "legacy":
        shape = (shape[2], shape[0], shape[1])
    if shape[1] != shape[2]:
        raise DataContractError(path, key, "square patterns (n, N, N) or legacy (N, N, n)", f"shape {shape}")
    return shape  # type: ignore[return-value]


# --------------------------------------------------------------------------- the contract


@dataclass
class RawData:
    """One ptychographic scan in the NPZ contract (DESIGN "Data contract")."""

    diffraction: np.ndarray
    probeGuess: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    objectGuess: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    xcoords_start: np.ndarray | None = None
    ycoords_start: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_positions(self) -> int:
        return int(self.diffraction.shape[0])

    @property
    def N(self) -> int:
        return int(self.diffraction.shape[-1])

    @property
    def diff3d(self) -> np.ndarray:
        """Legacy name of :attr:`diffraction` (n, N, N) amplitudes (ptychodus reads it)."""
        return self.diffraction

    @property
    def positions(self) -> np.ndarray:
        """(n, 2) scan positions as (x, y) in object pixels."""
        return np.stack([self.xcoords, self.ycoords], axis=1)

    def validate(self) -> None:
        """Check the contract; raise :class:`DataContractError` on the first violation."""
        src = self.source

        def need(key: str, value: Any, ok: bool, expected: str, found: str) -> None:
            if not ok:
                raise DataContractError(src, key, expected, found)

        d = self.diffraction
        need("diffraction", d, isinstance(d, np.ndarray), "an array", type(d).__name__)
        need("diffraction", d, not np.iscomplexobj(d), "real amplitudes (float32)", f"complex dtype {d.dtype}")
        need("diffraction", d, np.issubdtype(d.dtype, np.number), "real amplitudes (float32)", f"dtype {d.dtype}")
        need("diffraction", d, d.ndim == 3, "a 3-D stack (n, H, W)", f"shape {d.shape}")
        need("diffraction", d, d.shape[0] > 0, "at least one pattern", "an empty stack")
        need("diffraction", d, d.shape[1] == d.shape[2], "square patterns (n, N, N)", f"shape {d.shape}")
        need("diffraction", d, bool(np.all(np.isfinite(d))), "finite values", "NaN or Inf")
        need("diffraction", d, bool(np.all(d >= 0)), "non-negative amplitudes", f"minimum {float(d.min()):g}")
        self.diffraction = d.astype(np.float32, copy=False)
        n = d.shape[-1]

        p = self.probeGuess
        if isinstance(p, np.ndarray) and p.ndim == 3:
            # ptychodus hands a mode stack (modes, N, N); one mode is one coherent probe.
            need("probeGuess", p, p.shape[0] == 1, "one probe mode (N, N) or (1, N, N); the model is single-mode",
                 f"{p.shape[0]} modes, shape {p.shape}")
            p = p[0]
        need("probeGuess", p, isinstance(p, np.ndarray) and p.ndim == 2, "a 2-D complex probe (N, N)", f"shape {getattr(p, 'shape', None)}")
        need("probeGuess", p, p.shape == (n, n), f"shape ({n}, {n}) matching the patterns", f"shape {p.shape}")
        need("probeGuess", p, bool(np.all(np.isfinite(p))), "finite values", "NaN or Inf")
        self.probeGuess = p.astype(np.complex64, copy=False)

        for key in ("xcoords", "ycoords"):
            c = getattr(self, key)
            need(key, c, isinstance(c, np.ndarray) and c.ndim == 1, "a 1-D coordinate array (n,)", f"shape {getattr(c, 'shape', None)}")
            need(key, c, not np.iscomplexobj(c) and np.issubdtype(c.dtype, np.number), "real coordinates", f"dtype {c.dtype}")
            need(key, c, c.shape[0] == d.shape[0], f"{d.shape[0]} coordinates, one per pattern", f"{c.shape[0]}")
            need(key, c, bool(np.all(np.isfinite(c))), "finite values", "NaN or Inf")
            setattr(self, key, c.astype(np.float64, copy=False))
        for key in ("xcoords_start", "ycoords_start", "scan_index"):
            c = getattr(self, key)
            if c is not None:
                need(key, c, c.shape == (d.shape[0],), f"shape ({d.shape[0]},)", f"shape {c.shape}")
        o = self.objectGuess
        if o is not None:
            need("objectGuess", o, o.ndim == 2, "a 2-D complex object", f"shape {o.shape}")
            need("objectGuess", o, bool(np.all(np.isfinite(o))), "finite values", "NaN or Inf")
            self.objectGuess = o.astype(np.complex64, copy=False)

    # ------------------------------------------------------------------ I/O

    @classmethod
    def from_file(cls, path: Path | str) -> "RawData":
        """Load and validate an NPZ file (no pickles: ``allow_pickle=False``)."""
        path = Path(path)
        if not path.exists():
            raise DataContractError(path, None, "an existing NPZ file", "no such file")
        if path.is_dir():
            raise DataContractError(path, None, "an NPZ file", "a directory")
        if path.stat().st_size == 0:
            raise DataContractError(path, None, "an NPZ (zip) archive", "an empty file")
        from ptycho.npz_limits import check_npz  # sizes and shapes bounded before np.load allocates them

        check_npz(path)
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataContractError(path, None, "an NPZ (zip) archive", f"unreadable file ({exc})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataContractError(path, None, "an NPZ (zip) archive of named arrays", "a single .npy array")
        with archive:
            try:
                arrays = {k: archive[k] for k in archive.files}
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise DataContractError(path, None, "readable arrays", f"a corrupt member ({exc})") from None
        key = next((k for k in DIFFRACTION_KEYS if k in arrays), None)
        if key is None:
            raise DataContractError(path, "diffraction", "a diffraction stack ('diffraction' or legacy 'diff3d')", f"keys {sorted(arrays)}")
        for required in ("probeGuess", "xcoords", "ycoords"):
            if required not in arrays:
                raise DataContractError(path, required, "a required array", f"missing (keys: {sorted(arrays)})")
        diffraction = arrays[key]
        if diffraction.ndim != 3:
            raise DataContractError(path, key, "a 3-D stack (n, H, W)", f"shape {diffraction.shape}")
        if key == "diff3d" and PTYCHODUS_EXPORT_MARKER in arrays:
            diffraction = amplitudes_from_intensities(diffraction, path, key)
        xcoords = arrays["xcoords"]
        n_positions = xcoords.shape[0] if xcoords.ndim == 1 else None
        diffraction = canonical_diffraction(diffraction, n_positions, source=path)
        metadata: dict[str, Any] = {}
        if "_metadata" in arrays:
            try:
                metadata = json.loads(str(arrays["_metadata"]))
            except json.JSONDecodeError as exc:
                raise DataContractError(path, "_metadata", "a JSON string", f"invalid JSON ({exc.msg})") from None
        return cls(
            diffraction=diffraction,
            probeGuess=arrays["probeGuess"],
            xcoords=xcoords,
            ycoords=arrays["ycoords"],
            objectGuess=arrays.get("objectGuess"),
            scan_index=arrays.get("scan_index"),
            xcoords_start=arrays.get("xcoords_start"),
            ycoords_start=arrays.get("ycoords_start"),
            metadata=metadata,
            source=path,
        )

    @classmethod
    def from_coords_without_pc(
        cls,
        xcoords: np.ndarray,
        ycoords: np.ndarray,
        diff3d: np.ndarray,
        probeGuess: np.ndarray,
        scan_index: np.ndarray | None = None,
        objectGuess: np.ndarray | None = None,
    ) -> "RawData":
        """ptychodus's in-memory constructor: ``diff3d`` are its diffraction patterns, detector
        intensities (counts) (n, N, N), stored as amplitudes ``sqrt(I)``; positions in object pixels
        (x = column, y = row); ``probeGuess`` (N, N) or a one-mode stack (1, N, N)."""
        return cls(
            diffraction=amplitudes_from_intensities(np.asarray(diff3d), None, "diff3d"),
            probeGuess=np.asarray(probeGuess),
            xcoords=np.asarray(xcoords),
            ycoords=np.asarray(ycoords),
            objectGuess=None if objectGuess is None else np.asarray(objectGuess),
            scan_index=None if scan_index is None else np.asarray(scan_index),
        )

    def generate_grouped_data(
        self, N: int, K: int = 7, nsamples: int = 1, gridsize: int | None = None, seed: int | None = None
    ) -> "GroupedData":
        """The legacy method form of :func:`generate_grouped_data` (ptychodus calls it).

        ``N`` must be the patterns' size (0: take it from them); ``K`` nearest neighbours per group;
        ``nsamples`` groups per scan position (gridsize 1 has one group per position, as upstream);
        ``gridsize`` defaults to ``params.cfg``'s.
        """
        if N not in (0, self.N):
            raise ValueError(
                f"{self.source or '<array>'}: key 'diffraction': expected {N} x {N} patterns (N = {N}), found {self.N} x {self.N}"
            )
        if isinstance(nsamples, bool) or not isinstance(nsamples, (int, np.integer)) or nsamples < 1:
            raise ValueError(f"nsamples: invalid value {nsamples!r}; expected an integer >= 1 (groups per scan position)")
        grid = int(params.get("gridsize") if gridsize is None else gridsize)
        if grid > 1 and K < grid * grid:
            raise ValueError(
                f"K: {K} nearest neighbours cannot form groups of gridsize**2 = {grid * grid} patterns; "
                f"expected K >= {grid * grid} (ptychodus: NumNearestNeighbors)"
            )
        # One round per sample, each seeded differently: nsamples distinct groups per position.
        seeds = [seed] if grid == 1 or nsamples == 1 else [(seed or 0) + r for r in range(int(nsamples))]
        parts = [_group_and_normalise(self, self.N, grid, int(K), None, s) for s in seeds]
        if len(parts) == 1:
            return parts[0]
        return dataclasses.replace(
            parts[0],
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in ("X", "counts_amplitude", "indices", "offsets", "centers")},
        )

    def to_file(self, path: Path | str) -> Path:
        """Write the contract to ``path`` with deterministic bytes (fixed zip timestamps)."""
        arrays: dict[str, np.ndarray] = {
            "diffraction": self.diffraction.astype(np.float32),
            "probeGuess": self.probeGuess.astype(np.complex64),
            "xcoords": self.xcoords.astype(np.float64),
            "ycoords": self.ycoords.astype(np.float64),
        }
        for key in ("objectGuess", "scan_index", "xcoords_start", "ycoords_start"):
            value = getattr(self, key)
            if value is not None:
                arrays[key] = value
        meta = {"schema_version": SCHEMA_VERSION, **self.metadata}
        arrays["_metadata"] = np.array(json.dumps(meta, sort_keys=True))
        return write_npz_deterministic(path, arrays)


# ptychodus's save_ptychopinn_training_data writes this key (and 'diff3d' as detector intensities).
PTYCHODUS_EXPORT_MARKER = "bad_pixels"


def amplitudes_from_intensities(intensities: np.ndarray, path: Path | str | None, key: str) -> np.ndarray:
    """``sqrt(I)`` as float32: the data contract holds amplitudes, ptychodus measures intensities."""
    d = np.asarray(intensities)
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise DataContractError(path, key, "real detector intensities", f"dtype {d.dtype}")
    if d.size and np.nanmin(d) < 0:
        raise DataContractError(path, key, "non-negative detector intensities", f"minimum {float(np.nanmin(d)):g}")
    return np.sqrt(d.astype(np.float32))


def write_npz_deterministic(path: Path | str, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` with fixed member timestamps, written aside and renamed: same input, same bytes,
    and no half-written file if interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            npy_format.write_array(buffer, np.asanyarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class GroupedData:
    """Patterns arranged in groups of C = gridsize**2 neighbouring positions.

    ``X`` (B, C, N, N) normalised amplitudes; ``counts_amplitude`` the raw amplitudes (sqrt counts);
    ``indices`` (B, C) into the scan; ``offsets`` (B, C, 2) each position relative to its group's
    centre as (x, y); ``centers`` (B, 2) group centres; ``scale`` the normalisation factor applied.
    """

    X: np.ndarray
    counts_amplitude: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray
    centers: np.ndarray
    scale: float
    gridsize: int
    N: int


def group_neighbors(
    positions: np.ndarray,
    gridsize: int,
    neighbor_count: int,
    n_groups: int | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Form groups of ``C = gridsize**2`` positions from each anchor's K nearest neighbours.

    Returns ``(indices (B, C), offsets (B, C, 2))``. gridsize 1 keeps every position on its own (in
    scan order, or a seeded subsample of ``n_groups``). For C > 1 each anchor (all positions, or a
    seeded subsample) keeps itself and draws C-1 others from its K nearest (scipy cKDTree);
    deterministic for a seed.
    """
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, dtype=np.float64)
    n = positions.shape[0]
    c = gridsize * gridsize
    if gridsize < 1:
        raise ValueError(f"gridsize: expected an integer >= 1, got {gridsize}")
    if n < c:
        raise ValueError(f"grouping: gridsize {gridsize} needs at least {c} scan positions, the data has {n}")
    if c > 1 and neighbor_count < c:
        raise ValueError(
            f"neighbor_count: expected at least gridsize**2 = {c} neighbours per group, got {neighbor_count}"
        )
    if n_groups is not None and n_groups < 1:
        raise ValueError(f"n_groups: expected an integer >= 1, got {n_groups}")
    rng = np.random.default_rng(seed)
    count = n if n_groups is None else min(n_groups, n)
    anchors = np.arange(n) if count == n else np.sort(rng.choice(n, size=count, replace=False))
    if c == 1:
        indices = anchors[:, None]
    else:
        k = min(neighbor_count, n)
        _, nearest = cKDTree(positions).query(positions[anchors], k=k)
        nearest = np.atleast_2d(nearest)
        indices = np.empty((count, c), dtype=np.int64)
        for row, (anchor, candidates) in enumerate(zip(anchors, nearest)):
            others = candidates[candidates != anchor]
            indices[row, 0] = anchor
            indices[row, 1:] = rng.choice(others, size=c - 1, replace=False)
    group_positions = positions[indices]
    offsets = group_positions - group_positions.mean(axis=1, keepdims=True)
    return indices.astype(np.int64), offsets


def normalization_scale(amplitudes: np.ndarray) -> float:
    """Factor making the mean per-pattern energy ``sum(A^2)`` equal ``(N/2)^2`` (DESIGN)."""
    n = amplitudes.shape[-1]
    energy = float(np.mean(np.sum(np.asarray(amplitudes, dtype=np.float64) ** 2, axis=(-2, -1))))
    if not energy > 0:
        raise ValueError("diffraction: all patterns are zero; nothing to normalise")
    return float(np.sqrt((n / 2) ** 2 / energy))


def generate_grouped_data(
    raw: RawData,
    n_groups: int | None = None,
    neighbor_count: int | None = None,
    seed: int | None = None,
    *,
    N: int | None = None,
    gridsize: int | None = None,
) -> GroupedData:
    """Group and normalise a scan into groups of ``gridsize**2`` patterns of ``N x N``.

    The library passes ``N``, ``gridsize`` and ``neighbor_count`` from its configs. What is left
    out is read from the legacy ``params.cfg`` (CONFIG-001: the legacy entry point, for code that
    calls ``update_legacy_dict`` first; without it the legacy defaults apply, e.g. one channel where
    gridsize 2 was meant).
    """
    gridsize = int(params.get("gridsize") if gridsize is None else gridsize)
    n = int(params.get("N") if N is None else N)
    if raw.N != n:
        where = f"params.cfg['N'] = {n}" if N is None else f"N = {n}"
        raise ValueError(
            f"{raw.source or '<array>'}: key 'diffraction': expected {n} x {n} patterns ({where}), "
            f"found {raw.N} x {raw.N}; configure ModelConfig(N={raw.N})"
            + (" and call update_legacy_dict first" if N is None else "")
        )
    k = int(neighbor_count if neighbor_count is not None else params.cfg.get("neighbor_count", 4))
    return _group_and_normalise(raw, n, gridsize, k, n_groups, seed)


def _group_and_normalise(
    raw: RawData, n: int, gridsize: int, k: int, n_groups: int | None, seed: int | None
) -> GroupedData:
    indices, offsets = group_neighbors(raw.positions, gridsize, k, n_groups=n_groups, seed=seed)
    scale = normalization_scale(raw.diffraction)
    amplitude = raw.diffraction[indices]
    return GroupedData(
        X=(amplitude * scale).astype(np.float32),
        counts_amplitude=amplitude.astype(np.float32),
        indices=indices,
        offsets=offsets,
        centers=raw.positions[indices].mean(axis=1),
        scale=scale,
        gridsize=gridsize,
        N=n,
    )
