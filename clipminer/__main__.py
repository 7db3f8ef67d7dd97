"""`python -m clipminer` runs the command-line interface."""

from clipminer.cli import app

app(prog_name="clipminer")
