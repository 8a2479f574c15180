"""The `syn` command line (typer + rich; no torch). See docs/cli.md."""

from synesthesia.cli.app import app, main

__all__ = ["app", "main"]
