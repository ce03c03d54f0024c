"""Fixtures shared by the harness tests."""

from __future__ import annotations

import pytest
from webhook_receiver import Receiver


@pytest.fixture
def receiver():
    """A loopback webhook endpoint answering like a real one (``tests/harness/webhook_receiver.py``)."""
    server = Receiver.start()
    yield server
    server.stop()
