"""``dass-edge teacher``: train a teacher on a built-in task or an image folder."""
from __future__ import annotations

import typer

app = typer.Typer(help="Train teachers.", no_args_is_help=True)
