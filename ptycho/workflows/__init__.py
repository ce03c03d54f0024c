"""Training and inference workflows: the backend dispatcher (``backend_selector``), the workflows
written once over :class:`ptycho.backend_interface.Backend` (``train_and_reconstruct``, ``grouping``,
``reconstruction``) and the TensorFlow adapter and functions (``components``).

Importing this package loads no backend; ``backend_selector`` imports one on use.
"""
