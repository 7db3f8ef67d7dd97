"""What every command shares: the app, consoles, errors, progress bars, option types.

Names are data: file names, actions and labels are never read as rich markup
(``Song [official video].mp4``); styled words are built with :class:`~rich.text.Text`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from clipminer.errors import ClipminerError, describe_os_error
from clipminer.settings import FlatField, flat_fields, from_flat

DEBUG_KEY = "clipminer.debug"
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)
F = TypeVar("F", bound=Callable[..., Any])


def print_error(message: object, *, label: str = "error:", style: str = "red") -> None:
    """One line on stderr: a styled label, then ``message`` exactly as it is."""
    err_console.print(Text.assemble((label, style), " ", str(message)), highlight=False)


class ClipminerGroup(TyperGroup):
    """Maps clipminer errors to one line on stderr and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ClipminerError as exc:
            if ctx.meta.get(DEBUG_KEY):
                raise
            print_error(exc)
            raise typer.Exit(code=exc.exit_code) from None
        except OSError as exc:  # a filesystem fault not met closer to where it happened
            if ctx.meta.get(DEBUG_KEY):
                raise
            print_error(describe_os_error(exc))
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            err_console.print(Text("interrupted", style="red"))
            raise typer.Exit(code=130) from None


def make_app(help: str) -> typer.Typer:
    return typer.Typer(
        cls=ClipminerGroup,
        help=help,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        # Plain click help: option help is data, never rich markup, and at 100 columns
        # every option sits on its own line with its help beside it.
        rich_markup_mode=None,
        context_settings={"max_content_width": 100, "help_option_names": ["-h", "--help"]},
    )


app = make_app("Mine labelled action clips out of long videos.")
synth_app = make_app("Generate deterministic synthetic data (images, clips, long videos).")
app.add_typer(synth_app, name="synth")


def columns(*fields: ProgressColumn) -> tuple[ProgressColumn, ...]:
    """The usual progress columns: a bold name (never markup), a bar, ``fields``, times."""
    return (
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        *fields,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def progress_bar(
    description: str, *, lazy: bool = False
) -> Iterator[Callable[[float, float], None]]:
    """A rich progress bar; yields a ``(done, total)`` callback for the library. With
    ``lazy`` the bar appears at the first report of work, so a one-line refusal before
    any work is not preceded by an empty bar."""
    bar = Progress(*columns(MofNCompleteColumn()), console=err_console)
    task = bar.add_task(description, total=None)
    shown = not lazy

    def update(done: float, total: float) -> None:
        nonlocal shown
        if not shown:
            bar.start()
            shown = True
        bar.update(task, completed=done, total=total or None)

    if shown:
        bar.start()
    try:
        yield update
    finally:
        if shown:
            bar.stop()


def cell(value: object) -> str:
    """A table cell: ``-`` for NaN (not applicable), 2 decimals for floats, ``?`` for None."""
    if isinstance(value, float) and value != value:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "?" if value is None else str(value)


def parse_size(text: str, *, even: bool = False) -> tuple[int, int]:
    """Parse ``HxW`` (or a single number for a square) into (height, width).

    ``even`` demands even sides, as H.264 in yuv420p does.
    """
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH such as 240x320, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 16:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH, each at least 16, got {text!r}")
    if even and (parts[0] % 2 or parts[1] % 2):
        raise typer.BadParameter(f"video sides must be even (H.264 yuv420p), got {text!r}")
    return parts[0], parts[1]


# -- option types used by several commands ---------------------------------------------------

Out = Annotated[
    Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder (created if missing).")
]
ModelOut = Annotated[
    Path,
    typer.Option("--out", "-o", metavar="FILE", help="The model bundle to write (MODEL.pt)."),
]
Size = Annotated[str, typer.Option(metavar="HxW", help="Frame size as HEIGHTxWIDTH.")]
Seed = Annotated[
    int, typer.Option(metavar="N", help="Random seed; the same seed gives the same bytes.")
]
Device = Annotated[
    str,
    typer.Option(
        metavar="DEVICE", help="Where the model runs: auto (CUDA when present), cpu, cuda, cuda:N."
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        min=0, metavar="N", help="DataLoader worker processes (0: load in the main process)."
    ),
]
ImageModel = Annotated[
    str,
    typer.Option(
        metavar="FILE",
        help="Image model bundle that scores sampled frames (a path, or an s3:// or other "
        "fsspec URL: fetched once and cached by content hash).",
    ),
]
VideoModels = Annotated[
    list[str] | None,
    typer.Option(
        "--video-model",
        metavar="FILE",
        help="Video model bundle that re-labels each candidate; repeat for several "
        "(averaged). A path or a URL, as --image-model.",
    ),
]


def flag(help: str) -> Any:
    """A ``--x/--no-x`` switch whose default is said in words, not ``[default: no-x]``."""
    return typer.Option(help=help, show_default=False)


# -- options generated from a settings dataclass ------------------------------------------------


def _option(spec: FlatField) -> inspect.Parameter:
    """The typer parameter of one setting (see :mod:`clipminer.settings`)."""
    metavar = spec.metavar or {"float": "NUM", "int": "N", "str": "TEXT", "path": "PATH"}.get(
        spec.kind
    )
    kw: dict[str, Any] = {"help": spec.help, "metavar": metavar}
    if spec.kind in ("float", "int"):
        kw.update(min=spec.min, max=spec.max)
        if spec.above is not None:  # typer has no exclusive bound: say it, from_flat checks it
            kw["help"] += f"  [x>{spec.above:g}]"
        base: Any = float if spec.kind == "float" else int
    elif spec.kind == "choice":
        base = Enum(f"{spec.name}_choice", {c: c for c in spec.choices}, type=str)  # type: ignore[misc,no-redef]
    elif spec.kind == "strings":
        base = list[str]
    elif spec.kind == "path":
        base = Path
    elif spec.kind == "bool":
        base = bool
        kw["show_default"] = False
        kw.pop("metavar")
    else:
        base = str
    optional = spec.optional or spec.kind == "strings"
    default = spec.default
    if spec.kind == "strings":
        default = None
        if spec.default:
            kw["help"] += f"  [default: {', '.join(spec.default)}]"
    elif spec.kind == "choice":
        default = base(spec.default)
    decls = [f"{spec.option}/--no-{spec.option[2:]}"] if spec.kind == "bool" else [spec.option]
    annotation = Annotated[base | None if optional else base, typer.Option(*decls, **kw)]  # type: ignore[valid-type]
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def settings_options(cls: type, *, into: str) -> Callable[[F], F]:
    """Give a command one option per setting of ``cls`` and pass the built object as ``into``.

    The options are generated from the dataclass fields (:func:`~clipminer.settings.
    flat_fields`), so every command that takes these settings takes all of them, with the
    same names, help and bounds as the TOML keys.
    """
    specs = flat_fields(cls)

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != into]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {}
            for spec in specs:
                value = kwargs.pop(spec.name)
                if spec.kind == "strings" and not value:
                    continue  # not given: keep the default
                values[spec.name] = value.value if isinstance(value, Enum) else value
            kwargs[into] = from_flat(cls, values, where="options")
            return command(**kwargs)

        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own, *(_option(spec) for spec in specs)]
        )
        return run  # type: ignore[return-value]

    return decorate
