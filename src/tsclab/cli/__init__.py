"""Command-line layer: the ``tsclab`` command and its subcommands."""

from tsclab.cli.main import cli, main, run

__all__ = ["cli", "main", "run"]
