"""Synthetic ptychography: objects, probes, scans and Poisson diffraction written as the NPZ contract.

The canonical fixture (``ptycho-simulate --canonical``) has the shape of the brief's Run1084 set:
1087 scan positions and 64 x 64 patterns, generated deterministically in seconds instead of being
downloaded. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptycho import physics
from ptycho.raw_data import RawData

__all__ = [
    "OBJECT_KINDS",
    "make_object",
    "make_probe",
    "make_scan",
    "simulate",
    "CanonicalSpec",
    "CANONICAL",
    "canonical_path",
    "ensure_canonical_dataset",
    "main",
]

log = logging.getLogger(__name__)

OBJECT_KINDS = ("grf", "lines", "mixed")


def _smooth_field(shape: tuple[int, int], correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field with a Gaussian correlation of ``correlation`` pixels, scaled to [0, 1]."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * correlation) ** 2 * (fx**2 + fy**2))
    field = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    field -= field.min()
    return field / (field.max() or 1.0)


def _lines(shape: tuple[int, int], count: int, widths: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """``count`` straight bars of random orientation, soft-edged, with widths in pixels in ``widths``."""
    rows, cols = np.indices(shape, dtype=np.float64)
    canvas = np.zeros(shape)
    for _ in range(count):
        theta = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        width = rng.uniform(*widths)
        length = rng.uniform(0.2, 0.6) * min(shape)
        across = (cols - cx) * np.sin(theta) - (rows - cy) * np.cos(theta)
        along = (cols - cx) * np.cos(theta) + (rows - cy) * np.sin(theta)
        bar = np.clip(width / 2 + 0.5 - np.abs(across), 0, 1) * (np.abs(along) < length / 2)
        canvas = np.maximum(canvas, bar)
    return canvas


def make_object(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A complex object with features from a few pixels to tens of pixels.

    ``grf``: random fields at correlation lengths 3, 8 and 24 px. ``lines``: thin bars (1-5 px)
    over 20 px blobs. ``mixed`` (canonical): a 7 px field plus a few 3-5 px bars, the mix measured
    to be learnable by the network within the CPU budget. Amplitude in [0.5, 1], phase spanning
    about 2 rad, each with its own pattern (partly correlated, as in real samples).
    """
    shape = (size, size)
    if kind == "grf":
        amp = 0.5 * _smooth_field(shape, 3, rng) + 0.3 * _smooth_field(shape, 8, rng) + 0.2 * _smooth_field(shape, 24, rng)
        phase = 0.4 * _smooth_field(shape, 4, rng) + 0.6 * _smooth_field(shape, 16, rng)
    elif kind == "lines":
        amp = 0.6 * _lines(shape, 40, (1.0, 5.0), rng) + 0.4 * _smooth_field(shape, 20, rng)
        phase = 0.5 * _lines(shape, 25, (2.0, 6.0), rng) + 0.5 * _smooth_field(shape, 12, rng)
    elif kind == "mixed":
        amp = 0.8 * _smooth_field(shape, 7, rng) + 0.2 * _lines(shape, 12, (3.0, 5.0), rng)
        phase = 0.6 * _smooth_field(shape, 8, rng) + 0.3 * amp + 0.1 * _lines(shape, 8, (3.0, 5.0), rng)
    else:
        raise ValueError(f"object kind: invalid value {kind!r}; expected one of {', '.join(OBJECT_KINDS)}")
    amp = (amp - amp.min()) / (np.ptp(amp) or 1.0)
    phase = (phase - phase.min()) / (np.ptp(phase) or 1.0)
    return ((0.5 + 0.5 * amp) * np.exp(1j * (2.0 * phase - 1.0))).astype(np.complex64)


def make_probe(n: int, sigma: float = 8.0, aperture: float = 16.0, defocus: float = 3.0) -> np.ndarray:
    """A focused-beam probe: Gaussian amplitude inside a soft circular aperture of radius
    ``aperture`` px, with a quadratic (defocus) phase reaching ``defocus`` rad at the aperture edge."""
    if not 0 < aperture <= n / 2:
        raise ValueError(f"aperture: expected 0 < aperture <= N/2 = {n / 2}, got {aperture}")
    rows, cols = np.indices((n, n), dtype=np.float64) - n / 2
    r2 = rows**2 + cols**2
    edge = np.clip(aperture + 0.5 - np.sqrt(r2), 0.0, 1.0)
    amplitude = np.exp(-r2 / (2 * sigma**2)) * edge
    return (amplitude * np.exp(1j * defocus * r2 / aperture**2)).astype(np.complex64)


def make_scan(
    nx: int, ny: int, step: float, origin: float, jitter: float, rng: np.random.Generator, count: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A raster scan of ``nx * ny`` points (row by row) with uniform sub-pixel jitter; returns
    ``(x, y, x_start, y_start)`` where ``*_start`` are the nominal (unjittered) positions."""
    gy, gx = np.mgrid[0:ny, 0:nx]
    x_start = (origin + step * gx).ravel().astype(np.float64)
    y_start = (origin + step * gy).ravel().astype(np.float64)
    x = x_start + rng.uniform(-jitter, jitter, x_start.shape)
    y = y_start + rng.uniform(-jitter, jitter, y_start.shape)
    if count is not None:
        x, y, x_start, y_start = x[:count], y[:count], x_start[:count], y_start[:count]
    return x, y, x_start, y_start


def simulate(
    obj: np.ndarray,
    probe: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    nphotons: float,
    rng: np.random.Generator,
    metadata: dict | None = None,
    x_start: np.ndarray | None = None,
    y_start: np.ndarray | None = None,
) -> RawData:
    """Poisson diffraction of ``obj`` under ``probe`` at ``(x, y)``; amplitudes ``sqrt(k)`` as float32."""
    positions = np.stack([x, y], axis=1)
    intensities = physics.forward_intensity(obj, probe, positions)
    counts, scale = physics.poisson_counts(intensities, nphotons, rng)
    meta = {"nphotons": float(nphotons), "counts_scale": scale, "generator": "ptycho.simulate"}
    meta.update(metadata or {})
    return RawData(
        diffraction=np.sqrt(counts).astype(np.float32),
        probeGuess=probe,
        xcoords=np.asarray(x, np.float64),
        ycoords=np.asarray(y, np.float64),
        objectGuess=obj,
        scan_index=np.zeros(len(x), dtype=np.int64),
        xcoords_start=x_start,
        ycoords_start=y_start,
        metadata=meta,
    )


@dataclass(frozen=True)
class CanonicalSpec:
    """The canonical fixture: Run1084's shape (1087 positions, 64 x 64 patterns)."""

    seed: int = 1084
    n: int = 64
    grid: int = 33
    count: int = 1087
    step: float = 6.0
    jitter: float = 0.5
    nphotons: float = 1e9
    object_kind: str = "mixed"

    @property
    def origin(self) -> float:
        return self.n / 2 + 8.0

    @property
    def object_size(self) -> int:
        return int(2 * self.origin + self.step * (self.grid - 1))

    @property
    def filename(self) -> str:
        return f"canonical_run1084_seed{self.seed}.npz"


CANONICAL = CanonicalSpec()


def simulate_spec(spec: CanonicalSpec) -> RawData:
    rng = np.random.default_rng(spec.seed)
    obj = make_object(spec.object_kind, spec.object_size, rng)
    probe = make_probe(spec.n)
    x, y, xs, ys = make_scan(spec.grid, spec.grid, spec.step, spec.origin, spec.jitter, rng, count=spec.count)
    meta = {"seed": spec.seed, "object_kind": spec.object_kind, "scan_step": spec.step, "canonical": True}
    return simulate(obj, probe, x, y, spec.nphotons, rng, metadata=meta, x_start=xs, y_start=ys)


def datasets_dir() -> Path:
    """``$PTYCHO_DATASETS_DIR``, else ``datasets/`` at the repository root (or the working directory
    when the package is installed outside a checkout)."""
    env = os.environ.get("PTYCHO_DATASETS_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / "datasets"
    return Path.cwd() / "datasets"


def canonical_path(spec: CanonicalSpec = CANONICAL) -> Path:
    return datasets_dir() / spec.filename


def ensure_canonical_dataset(spec: CanonicalSpec = CANONICAL, force: bool = False) -> Path:
    """Generate the canonical fixture on first use (atomically); return its path."""
    path = canonical_path(spec)
    if path.exists() and not force:
        return path
    simulate_spec(spec).to_file(path)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptycho-simulate",
        description="Simulate a ptychographic scan and write it in the NPZ data contract.",
    )
    p.add_argument("--canonical", action="store_true", help="write the canonical fixture (1087 positions, 64x64) under datasets/")
    p.add_argument("--force", action="store_true", help="regenerate the canonical fixture even if present")
    p.add_argument("--output", type=Path, help="output .npz path (required unless --canonical)")
    p.add_argument("--object", dest="object_kind", choices=OBJECT_KINDS, default="mixed")
    p.add_argument("--N", type=int, default=64, choices=(32, 64, 128), help="pattern size in pixels")
    p.add_argument("--grid", type=int, default=33, help="raster points per side")
    p.add_argument("--count", type=int, help="keep only the first COUNT positions")
    p.add_argument("--step", type=float, default=6.0, help="scan step in pixels")
    p.add_argument("--jitter", type=float, default=0.5, help="uniform position jitter in pixels")
    p.add_argument("--nphotons", type=float, default=1e9, help="mean total counts per pattern")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    start = time.perf_counter()
    try:
        if args.canonical:
            path = canonical_path()
            existed = path.exists()
            path = ensure_canonical_dataset(force=args.force)
            verb = "kept existing" if existed and not args.force else "wrote"
        else:
            if args.output is None:
                raise ValueError("--output: required unless --canonical")
            for name in ("grid", "step", "nphotons"):
                if getattr(args, name) <= 0:
                    raise ValueError(f"--{name}: expected a value > 0, got {getattr(args, name)}")
            spec = CanonicalSpec(
                seed=args.seed, n=args.N, grid=args.grid, count=args.count or args.grid**2,
                step=args.step, jitter=args.jitter, nphotons=args.nphotons, object_kind=args.object_kind,
            )
            path = simulate_spec(spec).to_file(args.output)
            verb = "wrote"
    except (ValueError, OSError) as exc:
        print(f"ptycho-simulate: error: {exc}", file=sys.stderr)
        return 2
    size_mb = path.stat().st_size / 1e6
    print(f"{verb} {path} ({size_mb:.1f} MB) in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
