"""Native torch reassembly against the numpy reference on the canonical fixture (brief §5.3).

Stitches the true object patches of every scan position (1087 x 64 x 64, probe-intensity weights,
central 32 x 32 window as the model predicts it) into the 272 x 272 canvas with
``ptycho.stitching.reassemble_patches`` (numpy, ``np.add.at``) and with the torch ``index_add``
implementation (full patches, and the cropped window path the inference uses), in one run, and
prints the median times, their ratio and the largest difference.

    .venv/bin/python benchmarks/reassembly.py [--repeats 5] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_time(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import torch

    from ptycho import physics, stitching
    from ptycho.raw_data import RawData
    from ptycho.simulate import ensure_canonical_dataset
    from ptycho_torch.inference import stitch_reconstruction
    from ptycho_torch.reassembly import reassemble_patches

    if args.threads:
        torch.set_num_threads(args.threads)
    raw = RawData.from_file(ensure_canonical_dataset())
    n, crop = raw.N, raw.N // 2
    patches = physics.extract_patches(raw.objectGuess, raw.positions, n)
    weights = stitching.patch_weights(n, raw.probeGuess, crop=crop)
    shape = raw.objectGuess.shape

    t_numpy, ref = _median_time(lambda: stitching.reassemble_patches(patches, raw.positions, shape, weights), args.repeats)
    pt = torch.from_numpy(patches).to(torch.complex128)
    pos = torch.from_numpy(raw.positions)
    w = torch.from_numpy(weights)
    t_torch, full = _median_time(lambda: reassemble_patches(pt, pos, shape, w).numpy(), args.repeats)
    t_window, window = _median_time(
        # The reassembly alone: the phase synchronisation before it is not what is compared here.
        lambda: stitch_reconstruction(patches, raw.positions, raw.probeGuess, shape, crop, synchronise_phases=False),
        args.repeats,
    )
    scale = float(np.max(np.abs(ref)))
    figures = {
        "patches": list(patches.shape),
        "canvas": list(shape),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "numpy_s": round(t_numpy, 4),
        "torch_full_s": round(t_torch, 4),
        "torch_window_s": round(t_window, 4),
        "speedup_full": round(t_numpy / t_torch, 2),
        "speedup_window": round(t_numpy / t_window, 2),
        "max_rel_diff_full": float(np.max(np.abs(full - ref)) / scale),
        "max_rel_diff_window": float(np.max(np.abs(window - ref)) / scale),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"canonical fixture: {patches.shape[0]} patches of {n} x {n} -> {shape[0]} x {shape[1]} canvas, "
              f"median of {args.repeats}, torch threads {figures['torch_threads']}")
        print(f"  numpy reference (np.add.at)     {t_numpy:8.4f} s")
        print(f"  torch index_add, full patches   {t_torch:8.4f} s   x{figures['speedup_full']} vs numpy, "
              f"max rel diff {figures['max_rel_diff_full']:.1e}")
        print(f"  torch index_add, {crop}x{crop} window   {t_window:8.4f} s   x{figures['speedup_window']} vs numpy, "
              f"max rel diff {figures['max_rel_diff_window']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
