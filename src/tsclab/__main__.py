"""``python -m tsclab``."""

from tsclab.cli import run

run()
