"""Training and inference workflows: the TensorFlow ``components`` and the backend dispatcher.

Importing this package loads no backend; ``backend_selector`` imports one on use.
"""
