"""From votes back to the re-labeller: a round fine-tunes the video model on the verified
clips, puts it in place only where it does no worse, and waits for enough new votes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clipminer import synth
from clipminer.curate import catalog, verdicts
from clipminer.curate.retrain import RETRAIN_JSON, RetrainConfig, retrain_video
from clipminer.errors import UsageError
from clipminer.models.bundle import load_bundle
from tests.test_review import Row, make_mined


def _reviewed_out(root: Path) -> Path:
    """Ten videos, each with one clip of every action and one clip reviewers rejected."""
    videos = {
        f"v{k}": [*(Row(label, 0.8) for label in synth.ACTIONS), Row("spinning", 0.4)]
        for k in range(10)
    }
    out = make_mined(root / "OUT", videos, frames=8)
    with verdicts.connect(out) as con:
        for clip in catalog.all_clips(out):
            reject = clip.clip_id == len(synth.ACTIONS)
            verdicts.cast(con, clip, "ann", "reject" if reject else "accept")
    return out


def test_a_round_fine_tunes_guards_and_waits_for_new_votes(
    tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    out = _reviewed_out(tmp_path)
    model = tmp_path / "models" / "video.pt"
    model.parent.mkdir()
    shutil.copy(tiny_models[1], model)
    before = model.read_bytes()
    config = RetrainConfig(
        dataset=tmp_path / "ds", every_clips=20, epochs=1, device="cpu", min_val_clips=1
    )
    first = retrain_video(out, model, config)
    assert first.status in ("kept", "promoted"), first.detail
    assert first.decided == 60 and first.old_top1 is not None and first.new_top1 is not None
    assert sorted(p.name for p in (tmp_path / "ds" / "train").iterdir()) == sorted(
        load_bundle(model).labels
    )  # every action, and the rejected clips as background
    backups = list(model.parent.glob("video.before-*.pt"))
    if first.status == "promoted":
        assert first.new_top1 >= first.old_top1
        assert model.read_bytes() != before and [b.read_bytes() for b in backups] == [before]
        assert load_bundle(model).labels == load_bundle(tiny_models[1]).labels
    else:
        assert model.read_bytes() == before and not backups
        assert Path(str(first.candidate)).is_file()
    assert not list(model.parent.glob("*.train-state"))
    rounds = json.loads((out / RETRAIN_JSON).read_text())["rounds"]
    assert [r["status"] for r in rounds] == [first.status]
    # no new votes: no round
    again = retrain_video(out, model, config)
    assert again.status == "skipped" and "0 clips decided since the last round" in again.detail


def test_no_round_while_the_votes_miss_a_label_of_the_model(
    tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    out = _reviewed_out(tmp_path)
    model = tmp_path / "video.pt"
    shutil.copy(tiny_models[1], model)
    config = RetrainConfig(
        dataset=tmp_path / "ds", every_clips=1, epochs=1, device="cpu", rejected_as=None
    )
    found = retrain_video(out, model, config)  # no background clips without rejected_as
    assert found.status == "skipped" and "would forget" in found.detail
    assert "background" in found.detail
    assert not list(tmp_path.glob("video.candidate-*"))  # nothing trained
    with pytest.raises(UsageError, match="dataset"):
        retrain_video(out, model, RetrainConfig(every_clips=1))


def test_a_small_validation_split_never_promotes(
    tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    out = _reviewed_out(tmp_path)
    model = tmp_path / "video.pt"
    shutil.copy(tiny_models[1], model)
    before = model.read_bytes()
    config = RetrainConfig(dataset=tmp_path / "ds", every_clips=1, epochs=1, device="cpu")
    found = retrain_video(out, model, config)  # 2 of 10 videos: 12 validation clips < 50
    assert found.status == "kept" and "a promotion needs 50" in found.detail
    assert model.read_bytes() == before
