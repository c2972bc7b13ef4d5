"""The ``dass-edge`` command line: thin wrappers that parse, call the library and print.

Every command group lives in ``dass_edge/commands/<group>.py`` and is registered here. ``main``
turns :class:`DassEdgeError` and usage errors into one line on stderr with exit code 2.
"""

from __future__ import annotations

import sys

import typer

from dass_edge import __version__
from dass_edge.commands import data as data_commands
from dass_edge.commands import devices as devices_commands
from dass_edge.commands import distill as distill_commands
from dass_edge.commands import export as export_commands
from dass_edge.commands import meta as meta_commands
from dass_edge.commands import profile as profile_commands
from dass_edge.commands import search as search_commands
from dass_edge.commands import teacher as teacher_commands
from dass_edge.errors import DassEdgeError

__all__ = ["app", "main"]

app = typer.Typer(
    name="dass-edge",
    help="Hardware-aware, distillation-aware student search for edge deployment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dass-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Hardware-aware, distillation-aware student search for edge deployment."""


app.add_typer(data_commands.app, name="data")
app.add_typer(teacher_commands.app, name="teacher")
app.command("export")(export_commands.export_command)
app.command("distill")(distill_commands.distill_command)
app.add_typer(meta_commands.app, name="meta")
app.command("profile")(profile_commands.profile_command)
app.command("devices")(devices_commands.devices_command)
app.command("search")(search_commands.search_command)


def _fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; bad input ends in one line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    try:
        rv = app(args=args, prog_name="dass-edge", standalone_mode=False)
    except DassEdgeError as e:
        _fail(str(e))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", code=130)
    except typer.TyperException as e:  # usage errors: bad option, missing argument, bad value
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(f"{e.format_message()}{hint}", code=getattr(e, "exit_code", 2) or 2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
