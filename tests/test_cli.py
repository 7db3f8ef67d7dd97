"""The command-line shell: help, version, one-line errors, the synth commands, the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipminer import __version__
from clipminer.cli import app

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"clipminer {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("probe", "synth", "demo"):
        assert command in result.output


@pytest.mark.parametrize(
    "command", [["probe"], ["demo"], ["synth", "images"], ["synth", "clips"], ["synth", "long"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_probe_good_and_bad_files(lossless_video: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 5)
    result = runner.invoke(
        app, ["probe", str(lossless_video), str(bad), "--sample-fps", "2", "--json"]
    )
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(rows) == 1
    assert (rows[0]["width"], rows[0]["height"], rows[0]["sampled_frames"]) == (64, 48, 8)
    assert "notes.mp4: not a readable video container" in result.output
    assert "Traceback" not in result.output


def test_clipminer_errors_are_one_line_unless_debug(tmp_path: Path) -> None:
    # A bundle problem raised inside a command reaches the group's error mapping.
    from clipminer.cli import app as cli_app
    from clipminer.errors import ClipminerError

    @cli_app.command("boom", hidden=True)
    def boom() -> None:
        raise ClipminerError(f"{tmp_path}/x.mp4: something specific went wrong")

    try:
        result = runner.invoke(cli_app, ["boom"])
        assert result.exit_code == 1
        assert result.output.count("\n") == 1
        assert "error: " in result.output and "something specific went wrong" in result.output
        result = runner.invoke(cli_app, ["--debug", "boom"])
        assert isinstance(result.exception, ClipminerError)
    finally:
        cli_app.registered_commands = [c for c in cli_app.registered_commands if c.name != "boom"]


def test_synth_commands(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["synth", "images", "--out", str(tmp_path / "img"), "--per-class", "2", "--size", "32x32"],
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "img").rglob("*.jpg"))) == 12
    result = runner.invoke(
        app,
        [
            "synth",
            "clips",
            "--out",
            str(tmp_path / "ucf"),
            "--per-class",
            "2",
            "--seconds",
            "0.3",
            "--size",
            "32x48",
            "--layout",
            "ucf101",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ucf" / "splits" / "classInd.txt").is_file()
    result = runner.invoke(
        app,
        [
            "synth",
            "long",
            "--out",
            str(tmp_path / "long"),
            "--seconds",
            "12",
            "--size",
            "32x48",
            "--fps",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "long" / "long.truth.csv").is_file()


@pytest.mark.parametrize("size", ["31x48", "abc", "8x8"])
def test_bad_size_is_a_usage_error(tmp_path: Path, size: str) -> None:
    result = runner.invoke(app, ["synth", "long", "--out", str(tmp_path), "--size", size])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_demo_runs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--small"])
    assert result.exit_code == 0, result.output
    assert "true actions found" in result.output
    assert (tmp_path / "demo" / "mined" / "kinetics.csv").is_file()
    assert (tmp_path / "demo" / "mined" / "videos" / "demo_1" / "segments.csv").is_file()
    assert (tmp_path / "demo" / "mined" / "report.html").is_file()


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_entry_point_sets_omp_wait_policy(preset: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, clipminer.cli, sys; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected


def test_console_script_exits_nonzero_on_bad_input(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("clipminer")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run(
        [str(exe), "probe", str(tmp_path / "missing.mp4")], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "missing.mp4: no such file" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_reads_well_at_100_columns() -> None:
    """What a user sees in a 100-column terminal: whole summaries, no <bool>, no wrapping."""
    env = {**os.environ, "COLUMNS": "100"}

    def help_of(*command: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "clipminer", *command, "--help"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout

    top = help_of()
    commands = top.split("Commands:")[1]
    assert "..." not in commands  # every one-line summary is whole
    names = [line.split()[0] for line in commands.strip().splitlines()]
    assert {"find-clips", "batch", "scrape", "train-video"} <= set(names)
    for name in [*names, "synth long"]:
        text = help_of(*name.split())
        assert "<bool>" not in text and "[default: no-" not in text, name
        assert all(len(line) <= 100 for line in text.splitlines()), name
