"""Every awkward input through find-clips and batch: results or a one-line error, never
a traceback, and the batch completes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from clipminer.batch import run_batch
from clipminer.cli import app
from clipminer.encode import VideoWriter
from clipminer.layout import read_source

from .helpers import TINY_FLAGS, batch_config, model_flags


def _write(path: Path, frames: int, size: tuple[int, int]) -> Path:
    with VideoWriter(path, fps=10, size=size) as writer:
        for k in range(frames):
            writer.write(np.full((*size, 3), 20 * k % 255, np.uint8))
    return path


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 16000), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    folder = tmp_path_factory.mktemp("awkward")
    for sub in ("robustness", "actions"):
        for source in sorted((shared_data / sub).iterdir()):
            (folder / source.name).write_bytes(source.read_bytes())
    (folder / "zero.mp4").write_bytes(b"")
    whole = (shared_data / "actions" / "kinetics_arm_wrestling__mmaction2_demo.mp4").read_bytes()
    (folder / "half.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "text.mp4").write_text("this is not a video\n" * 10)
    _audio_only(folder / "audio_only.m4a")
    _write(folder / "single_frame.mp4", 1, (48, 64))
    _write(folder / "four_frames.mp4", 4, (48, 64))
    _write(folder / "very_wide.mp4", 30, (16, 640))
    # Names that exist on real disks (issue #11): each must get its own safe folder.
    for name in HOSTILE_NAMES:
        _write(folder / name, 12, (48, 64))
    return folder


HOSTILE_NAMES = (
    "..mp4", "...mp4", "state.sqlite.mp4", "kinetics.csv.mp4", "$^$.mp4", "x[y.mp4",
    "Song [official video].mp4", "[bold]x[red].mp4", "tab\there.mp4", "日本語" * 20 + ".mp4",
    "four_frames.mkv",
)  # fmt: skip


BAD = {"zero.mp4", "half.mp4", "text.mp4", "audio_only.m4a"}


def _source(folder: Path) -> Path | None:
    source = read_source(folder)
    return Path(source.path) if source else None


def test_find_clips_on_every_awkward_file(tiny_models, awkward: Path, tmp_path: Path) -> None:
    for path in sorted(awkward.iterdir()):
        command = ["find-clips", str(path), *model_flags(tiny_models), *TINY_FLAGS]
        result = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "out")])
        assert "Traceback" not in result.output, (path.name, result.output)
        if path.name in BAD:
            assert result.exit_code == 1, (path.name, result.output)
            errors = [line for line in result.output.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and path.name in errors[0], result.output
        else:
            assert result.exit_code == 0, (path.name, result.output)
            # shown as it is (tabs expanded), never as markup
            assert all(part in result.output for part in path.name.split()), path.name
            (folder,) = [f for f in (tmp_path / "out" / "videos").iterdir() if _source(f) == path]
            assert (folder / "segments.csv").is_file() and not folder.name.startswith(".")
    # Every video kept its own folder; OUT holds only its own files.
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"kinetics.csv", "videos"}


@pytest.mark.slow  # long: `make test-all` runs it
def test_batch_completes_over_every_awkward_file(
    tiny_models, awkward: Path, tmp_path: Path
) -> None:
    summary = run_batch(awkward, tmp_path / "out", config=batch_config(tiny_models))
    failed = {Path(o.path).name: o.error for o in summary.outcomes if not o.ok}
    done = {Path(o.path).name for o in summary.outcomes if o.ok}
    # Audio only, with an audio suffix: not a video, listed as skipped rather than failed.
    assert set(failed) == BAD - {"audio_only.m4a"} and summary.skipped == 1
    assert all(name in error and "\n" not in error for name, error in failed.items())
    hidden = {p.name for p in awkward.iterdir() if p.name.startswith(".")}  # ..mp4, ...mp4
    assert hidden and len(done) == len(list(awkward.iterdir())) - len(BAD) - len(hidden)
    assert (tmp_path / "out" / "report.html").is_file()
    outputs = {_source(f) for f in (tmp_path / "out" / "videos").iterdir()}
    assert outputs == {awkward.resolve() / name for name in done}
