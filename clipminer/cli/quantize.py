"""``clipminer quantize``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from clipminer.cli.common import app, console, progress_bar, settings_options
from clipminer.config import QuantizeConfig


@app.command()
@settings_options(QuantizeConfig, into="settings")
def quantize(
    model: Annotated[Path, typer.Argument(help="Image or video model bundle (fp32).")],
    calibration: Annotated[
        list[Path],
        typer.Option(
            "--calibration",
            "-c",
            help="Videos, images or folders of them, like what you will mine (repeatable). "
            "Half the inputs calibrate int8, half check agreement with fp32.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where the quantized bundle is written.")
    ],
    *,
    settings: QuantizeConfig,
) -> None:
    """Make a low-precision copy of a model, calibrated and checked on your own data.

    The copy is the same bundle with the quantized weights beside the fp32 ones; it loads
    weights-only, and find-clips runs it under --precision auto or int8.
    """
    from clipminer.quantize import quantize_bundle

    with progress_bar("calibration inputs") as update:
        result = quantize_bundle(model, calibration, out, **asdict(settings), progress=update)
    console.print(
        f"{result.path}: {result.precision} ({result.backend}), top-1 agreement with fp32 "
        f"{result.agreement:.4f} on {result.held_out} held-out inputs, {result.speedup:.2f}x "
        f"fp32 speed; calibrated on {result.calibration} in {result.seconds:.0f} s"
    )
