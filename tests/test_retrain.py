"""From votes back to the re-labeller: a round fine-tunes the video model on the verified
clips, puts it in place only where it does no worse, and waits for enough new votes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


def test_rounds_per_model_promote_the_better_keep_the_worse_and_wait_for_new_votes(
    tiny_models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two video models, one round each: the test-split scores (injected) promote one
    fine-tuned model and keep the other; a second night without new votes does nothing."""
    import clipminer.train_video

    out = _reviewed_out(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    better, worse = models / "a.pt", models / "b.pt"
    for path in (better, worse):
        shutil.copy(tiny_models[1], path)
    before = better.read_bytes()
    real = clipminer.train_video.evaluate_video_bundle

    def scored(bundle: Any, videos: Any, **kw: Any) -> Any:
        result = real(bundle, videos, **kw)
        name = Path(str(bundle.source)).name
        top1 = 0.5 if ".candidate-" not in name else 0.75 if name.startswith("a.") else 0.25
        return SimpleNamespace(video=SimpleNamespace(top1=top1), real=result)

    monkeypatch.setattr(clipminer.train_video, "evaluate_video_bundle", scored)
    config = RetrainConfig(
        dataset=tmp_path / "ds", every_clips=20, epochs=1, device="cpu", min_val_clips=1
    )
    promoted = retrain_video(out, better, config)
    assert promoted.status == "promoted", promoted.detail
    assert (promoted.decided, promoted.old_top1, promoted.new_top1) == (60, 0.5, 0.75)
    assert better.read_bytes() != before
    assert [b.read_bytes() for b in models.glob("a.before-*.pt")] == [before]
    assert load_bundle(better).labels == load_bundle(tiny_models[1]).labels
    assert load_bundle(better).input == load_bundle(tiny_models[1]).input  # clips as before
    assert sorted(p.name for p in (tmp_path / "ds" / "train").iterdir()) == sorted(
        load_bundle(better).labels
    )  # every action, and the rejected clips as background
    kept = retrain_video(out, worse, config)  # its own round: a's does not count for b
    assert kept.status == "kept" and "did worse" in kept.detail
    assert worse.read_bytes() == before and Path(str(kept.candidate)).is_file()
    assert not list(models.glob("*.train-state"))
    rounds = json.loads((out / RETRAIN_JSON).read_text())["rounds"]
    assert [(r["status"], Path(r["model"]).name) for r in rounds] == [
        ("promoted", "a.pt"), ("kept", "b.pt")
    ]  # fmt: skip
    for model in (better, worse):  # no new votes: no round
        again = retrain_video(out, model, config)
        assert again.status == "skipped" and "0 clips decided since the last round" in again.detail


@pytest.fixture
def reviewed(tiny_models: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """(OUT with every clip decided, a copy of the tiny video model to retrain)."""
    model = tmp_path / "video.pt"
    shutil.copy(tiny_models[1], model)
    return _reviewed_out(tmp_path), model


def test_no_round_while_the_votes_miss_a_label_of_the_model(
    reviewed: tuple[Path, Path], tmp_path: Path
) -> None:
    out, model = reviewed
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
    reviewed: tuple[Path, Path], tmp_path: Path
) -> None:
    out, model = reviewed
    before = model.read_bytes()
    config = RetrainConfig(dataset=tmp_path / "ds", every_clips=1, epochs=1, device="cpu")
    found = retrain_video(out, model, config)  # 15 % of 10 videos: 6-12 test clips < 50
    assert found.status == "kept" and "least 50" in found.detail
    assert model.read_bytes() == before
    assert not list(tmp_path.glob("video.candidate-*"))  # nothing trained
