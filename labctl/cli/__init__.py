"""The ``labctl`` command line: argument parsing and printing only; the work is in ``labctl.api``."""

from labctl.cli.app import app, main

__all__ = ["app", "main"]
