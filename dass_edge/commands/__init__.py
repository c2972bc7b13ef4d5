"""CLI command groups; each module exposes a typer app or command functions registered in ``cli.py``."""
