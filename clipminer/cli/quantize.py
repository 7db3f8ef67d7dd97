"""``clipminer quantize``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipminer.cli.common import app, console, progress_bar
from clipminer.config import PRECISIONS


@app.command()
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
    precision: Annotated[
        str,
        typer.Option(
            help=f"{', '.join(PRECISIONS)}: auto keeps the fastest mode that passes the "
            "guard (fp32 when none does); an explicit mode that fails it is an error.",
        ),
    ] = "auto",
    inputs: Annotated[
        int | None,
        typer.Option(min=4, help="Frames (image model, default 400) or clips (video, 48)."),
    ] = None,
    min_agreement: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Least top-1 agreement with fp32 on held-out inputs."),
    ] = 0.99,
    backend: Annotated[
        str,
        typer.Option(
            help="int8 backend: auto (OpenVINO when installed, else torch-fx), openvino, torch-fx."
        ),
    ] = "auto",
) -> None:
    """Make a low-precision copy of a model, calibrated and checked on your own data.

    The copy is the same bundle with the quantized weights beside the fp32 ones; it loads
    weights-only, and find-clips runs it under --precision auto or int8.
    """
    from clipminer.quantize import quantize_bundle

    if backend not in ("auto", "openvino", "torch-fx"):
        raise typer.BadParameter(f"must be auto, openvino or torch-fx, got {backend!r}")
    with progress_bar("calibration inputs") as update:
        result = quantize_bundle(
            model,
            calibration,
            out,
            precision=precision,
            inputs=inputs,
            min_agreement=min_agreement,
            backend=backend,  # type: ignore[arg-type]
            progress=update,
        )
    console.print(
        f"{result.path}: {result.precision} ({result.backend}), top-1 agreement with fp32 "
        f"{result.agreement:.4f} on {result.held_out} held-out inputs, {result.speedup:.2f}x "
        f"fp32 speed; calibrated on {result.calibration} in {result.seconds:.0f} s"
    )
