"""The TensorFlow (Keras) backend of PtychoPINN: what only TensorFlow needs, the twin of
``ptycho_torch`` module for module.

- :mod:`~ptycho.tf_backend.runtime`: how TensorFlow is imported (oneDNN on, import chatter off);
- :mod:`~ptycho.tf_backend.physics`, :mod:`~ptycho.tf_backend.reassembly`: the forward-model
  operators and the reassembly, named as in :mod:`ptycho.physics` / :mod:`ptycho.stitching`;
- :mod:`~ptycho.tf_backend.network`: the Keras PtychoPINN, its physics layer and training loss;
- :mod:`~ptycho.tf_backend.adam`: torch's Adam update rule for Keras variables;
- :mod:`~ptycho.tf_backend.model_manager`: the ``wts.h5.zip`` archive and the legacy
  ``model_manager.save`` of the current model;
- :mod:`~ptycho.tf_backend.inference`: prediction and reconstruction;
- :mod:`~ptycho.tf_backend.workflows.components`: training and the
  :class:`ptycho.backend_interface.Backend` adapter;
- :mod:`~ptycho.tf_backend.parity`: weights copied between the Keras and torch networks.

A subpackage of ``ptycho`` rather than a top-level ``ptycho_tf`` because the repository's top level
is fixed (DESIGN.md). The shared layer (configs, data, numpy physics, stitching, evaluation, the
workflows above the backend interface) stays in ``ptycho`` and reaches this package only through the
backend dispatcher; a few old
paths that ptychodus and the handoff brief name (``ptycho.tf_helper``, ``ptycho.model_manager``,
``ptycho.workflows.components``) re-export from here. Importing this package imports no TensorFlow;
its modules do.
"""
