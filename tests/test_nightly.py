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


def test_nightly_dedup_marks_a_reupload_and_compares_only_new_videos(
    tiny_models, tmp_path: Path
) -> None:
    from clipminer import synth
    from clipminer.curate.catalog import read_duplicates

    folder = tmp_path / "in"
    (first,) = make_videos(folder, 1, seconds=6)
    synth.reupload(first, folder / "reupload.mp4", crf=32)
    config = _write_config(tmp_path, tiny_models, folder)
    with config.open("a") as handle:
        handle.write('[night]\nstages = ["mine", "dedup"]\n[dedup]\nvideo_threshold = 0.995\n')
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK
    dups = read_duplicates(tmp_path / "out")
    assert dups.video_component.get(first.stem) == dups.video_component.get("reupload")
    assert len(dups.dropped_videos) == 1
    log_text = (tmp_path / "logs" / "nightly.log").read_text()
    assert "dedup: " in log_text and "0 videos compared before" in log_text
    make_videos(folder / "night2", seconds=4, names=["late.mp4"])
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK
    log_text = (tmp_path / "logs" / "nightly.log").read_text()
    assert "2 videos compared before" in log_text


def test_nightly_refuses_an_unknown_dedup_setting(tiny_models, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    config = _write_config(tmp_path, tiny_models, folder)
    with config.open("a") as handle:
        handle.write("[dedup]\ntreshold = 0.9\n")
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG


def test_nightly_retrain_stage_waits_for_votes_and_refuses_a_bad_table(
    tiny_models, tmp_path: Path
) -> None:
    """With a [retrain] table the night's retrain stage runs before mining; without
    enough decided clips it does nothing and says why. A bad table is a config error."""
    folder = tmp_path / "in"
    make_videos(folder, 1, seconds=4)
    config = _write_config(tmp_path, tiny_models, folder)
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK  # mined, no table
    config.write_text(config.read_text() + '\n[retrain]\ndataset = "ds"\nevery_clips = 50\n')
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK
    log_text = (tmp_path / "logs" / "nightly.log").read_text()
    assert "retrain: video.pt: skipped, 0 clips decided since the last round" in log_text
    assert not (tmp_path / "ds").exists()
    config.write_text(config.read_text().replace("every_clips = 50", "every_clips = 0"))
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG
    config.write_text(config.read_text().replace('dataset = "ds"\n', ""))
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG
