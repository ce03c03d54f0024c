"""Legacy import path kept for ptychodus: its PtychoPINN reconstructor calls
``ptycho.model_manager.save(dir)`` after training (docs/ptychodus.md, "Legacy names"). The
implementation is :mod:`ptycho.tf_backend.model_manager`; importing this loads no TensorFlow."""

from ptycho.tf_backend.model_manager import save

__all__ = ["save"]
