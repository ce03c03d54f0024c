"""Untrusted text (test messages, node ids, log lines, request paths) made safe to print.

A test can print anything: an escape sequence that recolours or clears the terminal, an OSC
sequence that sets the window title or a hyperlink, a carriage return that overwrites the line
before it, or hides the rest of a Markdown table row. Wherever the harness echoes such text (the
console summary, live progress, the ``harness serve`` log, the Markdown summary), control
characters are shown as visible symbols instead of acting: ESC becomes ``␛``, a lone CR ``␍``, the
other C0 characters their Unicode control pictures, C1 characters ``\\x9b``-style escapes.
Newlines (and tabs) are kept only where the output is multi-line.
"""

from __future__ import annotations

import re

# C0 controls (minus what the caller keeps), DEL, C1 controls, and the Unicode line and
# paragraph separators, which some viewers treat as line breaks.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ ... ␟ (ESC -> ␛, CR -> ␍)
    if code == 0x7F:
        return "␡"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def neutralise(text: object, *, keep: str = "") -> str:
    """``text`` with every control character shown rather than acted on, except those in
    ``keep`` (``"\\n\\t"`` for multi-line output). A CR before a kept LF is dropped (CRLF line ends)."""
    value = "" if text is None else str(text)
    if "\n" in keep:
        value = value.replace("\r\n", "\n")
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else _visible(m.group()), value)


def one_line(text: object) -> str:
    """``neutralise`` for a single line: newlines and tabs shown too."""
    return neutralise(text)
