"""The TensorFlow path's entry module under the name two outside contracts use; the
implementation is :mod:`ptycho.tf_backend.workflows.components`.

- The handoff brief §1.4: "TensorFlow Path (``backend='tensorflow'``): delegates to
  ``ptycho.workflows.components``": the dispatcher (:mod:`ptycho.workflows.backend_selector`)
  imports this module for ``run_cdi_example``, ``load_inference_bundle`` and ``BACKEND``.
- ptychodus (docs/ptychodus.md, "Legacy names"): ``run_cdi_example``, ``save_outputs`` and
  ``load_inference_bundle``.
"""

from ptycho.tf_backend.workflows.components import BACKEND, load_inference_bundle, run_cdi_example, save_outputs

__all__ = ["BACKEND", "load_inference_bundle", "run_cdi_example", "save_outputs"]
