"""One find-clips configuration: the command line, batch and nightly.toml are views of the
same dataclass fields, and the same settings give byte-identical outputs through all three."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipminer.cli import app
from clipminer.config import FindClipsConfig, findclips_config
from clipminer.errors import UsageError
from clipminer.settings import flat_fields, to_flat
from jobs import nightly

from .helpers import make_videos

runner = CliRunner()
SETTINGS = {
    "segment_on": "action",
    "threshold": 0.4,
    "threshold_low": 0.3,
    "smooth_seconds": 0.5,
    "min_seconds": 1.0,
    "max_seconds": 3.0,
    "merge_gap_seconds": 0.5,
    "pad_seconds": 0.25,
    "background_labels": ["background"],
    "max_clips_per_video": 5,
    "batch_size": 3,
    "image_size": 32,
    "relabel_windows": 2,
    "device": "cpu",
    "decode_device": "cpu",
}


def _flags(settings: dict[str, object]) -> list[str]:
    flags: list[str] = []
    for name, value in settings.items():
        for item in value if isinstance(value, list) else [value]:
            flags += [f"--{name.replace('_', '-')}", str(item)]
    return flags


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


def test_every_setting_is_an_option_of_find_clips_and_batch() -> None:
    options = [f.option for f in flat_fields(FindClipsConfig)]
    assert len(options) == len(set(options)) >= 18
    for command in ("find-clips", "batch"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0
        for option in options:
            assert option in result.output, (command, option)
        assert "<bool>" not in result.output


def test_flat_settings_round_trip() -> None:
    config = findclips_config(dict(SETTINGS), where="test")
    assert config.segment.pad_seconds == 0.25 and config.relabel_windows == 2
    assert findclips_config(to_flat(config), where="again") == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"treshold": 0.5}, "unknown setting treshold; valid: sample_fps, threshold"),
        ({"threshold": "high"}, "threshold must be a number >= 0 and <= 1, got 'high'"),
        ({"classes": "bouncing"}, "classes must be a list of strings"),
        ({"cut": "fast"}, "cut must be one of reencode, copy, none"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"min_seconds": 5.0, "max_seconds": 3.0}, "max_seconds must be positive and >= min"),
    ],
)
def test_bad_settings_are_one_line(values: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=r"^nightly\.toml: ") as caught:
        findclips_config(values, where="nightly.toml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_nightly_refuses_unknown_keys(tmp_path: Path, tiny_models) -> None:
    config = tmp_path / "nightly.toml"
    config.write_text(
        f'[batch]\ninput = "in"\noutput_root = "out"\nimage_model = "{tiny_models[0]}"\n'
        '[findclips]\nbackground_labels = ["background"]\nclases = ["a"]\n'
    )
    with pytest.raises(UsageError, match=r"\[findclips\]: unknown setting clases; valid: "):
        nightly.load_config(config)
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG


def test_same_settings_same_segments_through_find_clips_batch_and_nightly(
    tmp_path: Path, tiny_models
) -> None:
    video = make_videos(tmp_path / "in", 1, seconds=8)[0].resolve()
    models = ["--image-model", str(tiny_models[0]), "--video-model", str(tiny_models[1])]
    found = runner.invoke(
        app, ["find-clips", str(video), "--out", str(tmp_path / "a"), *models, *_flags(SETTINGS)]
    )
    assert found.exit_code == 0, found.output
    batched = runner.invoke(
        app,
        ["batch", str(tmp_path / "in"), "--out", str(tmp_path / "b"), *models, *_flags(SETTINGS)],
    )
    assert batched.exit_code == 0, batched.output
    toml = tmp_path / "nightly.toml"
    toml.write_text(
        f'[batch]\ninput = "in"\noutput_root = "c"\nimage_model = "{tiny_models[0]}"\n'
        f'video_models = ["{tiny_models[1]}"]\n[findclips]\n'
        + "".join(f"{k} = {_toml_value(v)}\n" for k, v in SETTINGS.items())
    )
    assert nightly.main(["--config", str(toml)]) == nightly.EXIT_OK
    segments = [(tmp_path / run / "videos" / "v0" / "segments.csv").read_bytes() for run in "abc"]
    assert segments[0].count(b"\n") > 1, "the settings should give clips to compare"
    assert segments[0] == segments[1] == segments[2]


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"sample_fps": 0.0}, "--sample-fps must be a number >= 0.01, got 0.0"),
        ({"cut": "fast"}, "--cut must be one of reencode, copy, none, got 'fast'"),
        ({"cut_crf": 60}, "--cut-crf must be an integer >= 0 and <= 51, got 60"),
        ({"open_set_threshold": 1.5}, "--open-set-threshold must be a number >= 0 and <= 1"),
        ({"image_size": 8}, "--image-size must be an integer >= 16, got 8"),
    ],
)
def test_settings_built_in_code_meet_their_declaration(kw: dict, said: str) -> None:
    """The declaration is the one place a bound is written: objects built in code are
    checked against it as the command line and TOML are."""
    with pytest.raises(UsageError, match=re.escape(said)):
        FindClipsConfig(**kw)
    assert FindClipsConfig(open_set_threshold=None, max_clips_per_video=None).sample_fps == 2.0


def test_an_exclusive_bound_is_declared_once_and_checked_everywhere() -> None:
    from clipminer.config import FitConfig

    with pytest.raises(UsageError, match=re.escape("--lr must be a number > 0, got 0.0")):
        FitConfig(lr=0.0)
    done = CliRunner().invoke(app, ["train-image", ".", "--out", "x.pt", "--lr", "0"])
    assert done.exit_code == 2 and "lr must be a number > 0" in done.output
    assert FitConfig(lr=1e-9).lr == 1e-9
