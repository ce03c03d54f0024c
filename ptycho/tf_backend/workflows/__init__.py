"""The TensorFlow backend's training workflow and Backend adapter (as ``ptycho_torch.workflows``)."""
