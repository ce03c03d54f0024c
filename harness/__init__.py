"""Regression-monitoring harness for the ptycho backends.

Runs the mandated pytest selectors in subprocesses (it never imports torch or tensorflow),
parses their pytest-json-report output, applies the trigger rules of ``alerts/rules.yaml``,
remembers history in SQLite and writes timestamped report directories.

Data flows one way: catalog -> runner -> report parser -> rules -> history -> render.
"""

__version__ = "0.1.0"
