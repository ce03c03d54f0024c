"""Text the tests wrote (messages, output, node ids) and text clients send is shown, never acted
on: no escape sequence or carriage return reaches the terminal, the ``harness serve`` log or the
Markdown summary, and ``harness serve`` answers only to its own address (DNS rebinding)."""

from __future__ import annotations

import io
import socket

from sample_projects import SampleProject

from harness.catalog import load_catalog
from harness.render import md_cell
from harness.serve import Server
from harness.terminal_text import neutralise, one_line

HOSTILE = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\rOVERWRITTEN\\x9b5m"

PRINTS_AND_FAILS = f'''
import pytest
def test_hostile_message():
    print("{HOSTILE}")
    assert 0, "{HOSTILE}"
'''


def _inert(text: str) -> bool:
    return not any(ch in text for ch in ("\x1b", "\x07", "\x9b")) and "\r" not in text.replace("\r\n", "\n")


def test_neutralise_shows_control_characters():
    text = "a\x1b[31m\x07b\rc\r\nd\u2028"
    assert neutralise(text, keep="\n") == "a␛[31m␇b␍c\nd\\u2028"
    assert one_line("x\ny") == "x␊y"
    assert md_cell("tests/t.py::test[a\rb]") == "tests/t.py::test[a ⏎ b]"


def test_a_run_with_hostile_test_output_prints_and_writes_it_inertly(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_hostile.py", PRINTS_AND_FAILS)
    project.catalog({"integration": {"args": ["tests/test_hostile.py"]}})
    result = project.run("--no-history")
    assert result.returncode == 1, result.stderr
    assert "pwned" in result.stdout  # the message is still shown ...
    assert _inert(result.stdout) and _inert(result.stderr)  # ... but cannot act on the terminal
    summary = (result.run_dirs[-1] / "summary.md").read_text(encoding="utf-8")
    assert "OVERWRITTEN" in summary and _inert(summary)
    for line in summary.splitlines():
        if line.startswith("|"):
            assert line.rstrip().endswith("|"), line  # no table row cut short


def _raw_get(port: int, request: bytes) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.decode("utf-8", "replace")


def test_serve_answers_only_to_its_own_host_names_and_logs_request_lines_inertly(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_ok.py", "def test_ok(): pass\n")
    project.catalog({"integration": {"args": ["tests/test_ok.py"]}})
    log = io.StringIO()
    server = Server(load_catalog(tmp_path / "catalog.toml"), {"pr": "0 0 1 1 *"}, [], tmp_path / "reports",
                    port=0, log=log)
    httpd = server.start_http()
    try:
        port = httpd.server_address[1]
        for host, expected in ((f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), ("localhost", 200),
                               (f"attacker.example:{port}", 403), ("attacker.example", 403)):
            status, _ = _raw_get(port, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert status == expected, host
        _raw_get(port, b"GET /\x1b]0;pwned\x07\x1b[2J HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    finally:
        httpd.shutdown()
        httpd.server_close()
    text = log.getvalue()
    assert "pwned" in text and _inert(text)
