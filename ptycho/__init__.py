"""PtychoPINN: physics-informed reconstruction of ptychographic data (shared layer + TensorFlow backend).

Importing ``ptycho`` imports neither TensorFlow nor torch; the backends load on use.
"""

__version__ = "0.1.0"
