"""Drive ptychodus's own PtychoPINN reconstructor (unmodified) against this library.

Run as a script by ``test_ptychodus_client.py``:
``python ptychodus_client_driver.py FIXTURE WORKDIR RESULT_JSON`` with ``PTYCHODUS_SITE`` naming
the directory ptychodus was installed into (``pip install --no-deps --target``).

It does what a ptychodus user does: export training data from a ReconstructInput, train (ptychodus
spawns a child running ``_subprocess.run_train``), "Save Model", "Open Model", reconstruct (a child
running ``_subprocess.run_reconstruct``). The module level installs the ptychodus import path, so
ptychodus's ``spawn`` children (which re-run this file's top level as ``__mp_main__``) get it too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import types
from pathlib import Path


def install_ptychodus_path(site: str) -> None:
    """Import ``ptychodus.api`` and ``ptychodus.model.*`` submodules without executing
    ``ptychodus/model/__init__.py`` (and ``processing/__init__.py``): those build the whole
    application (GUI, plugins, cloud clients), which ``pip install --no-deps`` does not provide."""
    if site not in sys.path:
        sys.path.insert(0, site)
    import ptychodus

    root = Path(ptychodus.__file__).parent
    parent = ptychodus
    for dotted in ("ptychodus.model", "ptychodus.model.processing"):
        if dotted not in sys.modules:
            package = types.ModuleType(dotted)
            package.__path__ = [str(root.joinpath(*dotted.split(".")[1:]))]
            package.__package__ = dotted
            sys.modules[dotted] = package
            setattr(parent, dotted.rsplit(".", 1)[1], package)
        parent = sys.modules[dotted]


install_ptychodus_path(os.environ["PTYCHODUS_SITE"])

EPOCHS = 3
PIXEL_M = 1e-8  # any pixel size: positions are converted to metres and back by ptychodus


def reconstruct_input(raw, indices):
    """A ptychodus ReconstructInput for the scan points ``indices`` of an NPZ-contract scan:
    detector counts (amplitude squared), positions in metres about the object's centre, the probe,
    and a flat initial object (the truth stays out of ptychodus's hands)."""
    import numpy as np
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
    from ptychodus.api.product import Product, ProductMetadata
    from ptychodus.api.reconstruct import ReconstructInput

    height, width = raw.objectGuess.shape
    positions = ProbePositionSequence(
        [
            ProbePosition(int(i), (raw.xcoords[i] - (width - 1) / 2) * PIXEL_M, (raw.ycoords[i] - (height - 1) / 2) * PIXEL_M)
            for i in indices
        ]
    )
    pixels = PixelGeometry(width_m=PIXEL_M, height_m=PIXEL_M)
    metadata = ProductMetadata(
        name="canonical", comments="", detector_distance_m=1.0, photon_energy_eV=10000.0,
        probe_photon_count=0.0, exposure_time_s=0.0, mass_attenuation_m2_per_kg=0.0, tomography_angle_deg=0.0,
    )
    product = Product(
        metadata=metadata,
        probe_positions=positions,
        probes=ProbeSequence(raw.probeGuess.astype(np.complex64), None, pixels),
        object_=Object(np.ones((height, width), np.complex64), pixels, ObjectCenter(0.0, 0.0)),
        losses=[],
    )
    counts = np.rint(raw.diffraction[indices].astype(np.float64) ** 2).astype(np.int64)
    bad = np.zeros(counts.shape[1:], dtype=bool)
    return ReconstructInput(diffraction_patterns=counts, bad_pixels=bad, product=product)


def main(fixture: Path, workdir: Path, result_path: Path) -> None:
    import numpy as np
    from ptychodus.api.settings import SettingsRegistry
    from ptychodus.model.ptychopinn.core import PtychoPINNReconstructorLibrary

    from ptycho.raw_data import RawData

    logs: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logs.append(f"{record.name}: {record.getMessage()}")

    logging.getLogger().addHandler(Collect())
    logging.getLogger().setLevel(logging.INFO)

    raw = RawData.from_file(fixture)
    library = PtychoPINNReconstructorLibrary(SettingsRegistry(), is_developer_mode_enabled=False)
    reconstructors = {r.name: r for r in library}
    library.training_settings.nepochs.set_value(EPOCHS)
    library.model_settings.n_filters_scale.set_value(1)
    # ptychodus's ProbeBig off: the network predicts the central N/2 x N/2 (trains faster here).
    library.model_settings.probe_big.set_value(False)

    everything = reconstruct_input(raw, np.arange(raw.n_positions))
    validation = reconstruct_input(raw, np.arange(0, raw.n_positions, 17))
    data_dir, model_dir, cwd = workdir / "exported", workdir / "trained", workdir / "cwd"
    for d in (data_dir, cwd):
        d.mkdir(parents=True)
    os.chdir(cwd)  # ptychodus's output_dir=Path() must not land here

    result: dict = {}
    supervised = reconstructors["Supervised"]
    supervised.export_training_data(data_dir / "train_data.npz", everything)
    try:
        list(supervised.train(data_dir, model_dir))
        result["supervised_error"] = None
    except Exception as exc:  # noqa: BLE001 - the refusal's type and text are what the test checks
        result["supervised_error"] = f"{type(exc).__name__}: {exc}"

    pinn = reconstructors["PINN"]
    pinn.export_training_data(data_dir / "train_data.npz", everything)
    pinn.export_training_data(data_dir / "test_data.npz", validation)
    list(pinn.train(data_dir, model_dir))
    saved = workdir / "saved_model.zip"
    pinn.save_model(saved)  # "Save Model"
    pinn.load_model_from_file(saved)  # "Open Model": ptychodus unpacks the .zip into a folder
    outputs = list(pinn.reconstruct(everything))
    obj = outputs[-1].product.object_.get_array()
    np.save(workdir / "reconstruction.npy", obj)
    result.update(
        outputs=len(outputs),
        object_shape=list(obj.shape),
        model_dir=sorted(p.name for p in model_dir.iterdir()),
        cwd=sorted(p.name for p in cwd.iterdir()),
        logs=logs,
    )
    result_path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
