"""jobs/nightly.py: configuration, exit codes, rotating log."""

from __future__ import annotations

from pathlib import Path

from jobs import nightly

from .helpers import make_videos


def _write_config(tmp_path: Path, bundles: tuple[Path, Path], folder: Path, **extra: str) -> Path:
    config = tmp_path / "nightly.toml"
    config.write_text(
        f"""[batch]
input = "{folder}"
output_root = "out"
image_model = "{bundles[0]}"
video_models = ["{bundles[1]}"]
{extra.get("batch", "")}
[findclips]
segment_on = "action"
min_seconds = 1.0
max_seconds = 4.0
device = "cpu"

[log]
file = "logs/nightly.log"
"""
    )
    return config


def test_nightly_runs_and_logs(tiny_models, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_videos(folder, 1, seconds=4)
    (folder / "broken.mp4").write_text("no")
    config = _write_config(tmp_path, tiny_models, folder)
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_FAILED_VIDEOS
    log_text = (tmp_path / "logs" / "nightly.log").read_text()
    assert "failed: " in log_text and "broken.mp4" in log_text and "1 done, 1 failed" in log_text
    assert (tmp_path / "out" / "report.html").is_file()
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK  # nothing new to do


def test_nightly_bad_config(tiny_models, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[batch]\ninput = 'x'\n")
    assert nightly.main(["--config", str(bad)]) == nightly.EXIT_CONFIG
    assert nightly.main(["--config", str(tmp_path / "missing.toml")]) == nightly.EXIT_CONFIG
