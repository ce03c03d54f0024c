"""Workflows of the PyTorch backend (training orchestration, reconstruction)."""
