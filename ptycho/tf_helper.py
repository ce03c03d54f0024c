"""Legacy import path kept for ptychodus: its PtychoPINN reconstructor calls
``ptycho.tf_helper.reassemble_position(obj, global_offsets, M=20)`` (docs/ptychodus.md, "Legacy
names"). The implementation is :mod:`ptycho.tf_backend.reassembly`."""

from ptycho.tf_backend.reassembly import reassemble_position

__all__ = ["reassemble_position"]
