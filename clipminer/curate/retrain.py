"""From votes back to the re-labeller: fine-tune the video model on the verified clips and
put it in place only where it does no worse.

Once enough clips of OUT were decided by reviewers since this model's last round
(``every_clips``), one round: export the verified clips (accepted ones under their label,
rejected ones as ``rejected_as``, usually the background class) to ``dataset`` split
70/15/15 with no source video in two splits, fine-tune the current video model on train
(its weights and clip format kept; the epoch chosen on val), score the old and the new
model on test, which neither saw, and replace the model file with the new one only when
test has at least ``min_val_clips`` clips and the new video-level top-1 is at least the
old one's (the old file is kept beside it as ``<name>.before-<date>.pt``, the newest three
of them). The replacement is a rename, so a run that has the old file open keeps reading
the old weights.

No round runs, with the reason, while the verified labels differ from the model's: a
model fine-tuned on some of its classes would forget the others, and one with other
classes is another model. Rounds (kept, promoted, failed) are appended to
``OUT/retrain.json``; a failed one leaves no candidate behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipminer.curate import catalog, verdicts
from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path
from clipminer.settings import setting

if TYPE_CHECKING:
    from clipminer.models.bundle import Bundle

log = logging.getLogger(__name__)
RETRAIN_JSON = "retrain.json"
DECIDED = frozenset({"accepted", "rejected"})


@dataclass(frozen=True)
class RetrainConfig:
    """``[retrain]`` of ``nightly.toml``: when and how the video model learns from votes."""

    dataset: Path | None = setting(
        None, "Where each round exports the verified clips (replaced each round).", metavar="DIR"
    )
    every_clips: int = setting(
        200, "Retrain once this many more clips were decided by reviewers since the last "
        "round.", min=1, metavar="N",
    )  # fmt: skip
    epochs: int = setting(3, "Fine-tuning epochs.", min=1)
    min_val_clips: int = setting(
        50, "Compare the old and the fine-tuned model only on a verified test split of at "
        "least this many clips (fewer: no round, no training): on fewer, one clip decides "
        "(measured: a round promoted on 18 clips did worse on new videos).",
        min=1, metavar="N",
    )  # fmt: skip
    rejected_as: str | None = setting(
        "background", "The class rejected clips are trained as (empty: left out).",
        metavar="LABEL",
    )  # fmt: skip
    device: str = setting("auto", "Where it trains: auto, cpu, cuda, cuda:N.")


@dataclass(frozen=True)
class RetrainReport:
    """One round, or why there was none."""

    status: str
    """``skipped`` (not enough new votes, or labels not covered), ``kept`` (the new model
    did worse), ``promoted``."""
    detail: str
    decided: int = 0
    old_top1: float | None = None
    new_top1: float | None = None
    model: str | None = None
    candidate: str | None = None


def _history(out: Path) -> list[dict[str, Any]]:
    path = out / RETRAIN_JSON
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not readable ({exc}); move it away to start over") from None
    return list(data.get("rounds", [])) if isinstance(data, dict) else []


def _record(out: Path, report: RetrainReport) -> None:
    rounds = [*_history(out), {**asdict(report), "at": time.time()}]
    with atomic_path(out / RETRAIN_JSON) as tmp:
        tmp.write_text(json.dumps({"rounds": rounds}, indent=2), encoding="utf-8")


def decided_clips(out: Path, rejected_as: str | None) -> tuple[int, set[str]]:
    """How many clips of ``out`` reviewers decided (accepted or rejected, under its stored
    rule, dropped duplicates left out), and the labels a round would train them as."""
    rule, _ = verdicts.rule_for_export(out, verdicts.RuleChoice(), override=False)
    clips = catalog.all_clips(out)
    dropped = catalog.read_duplicates(out)
    kept = [c for c in clips if not dropped.dropped(c)]
    found = verdicts.verdicts(out, kept, rule).values()
    labels = {v.label for v in found if v.status == "accepted" and v.label}
    if rejected_as and any(v.status == "rejected" for v in found):
        labels.add(rejected_as)
    return sum(v.status in DECIDED for v in found), labels


def _labels_problem(model: tuple[str, ...], verified: set[str]) -> str | None:
    """Why the verified clips cannot fine-tune a model with ``model``'s labels, or None.

    Training names its classes after the dataset's folders, in sorted order, and carries
    the classifier over row by row: the labels must be the same set, in sorted order, and
    safe as folder names."""
    from clipminer.curate.export import label_folders

    missing, extra = sorted(set(model) - verified), sorted(verified - set(model))
    if missing:
        return (
            f"the verified clips cover {len(model) - len(missing)} of the model's "
            f"{len(model)} labels (none yet for {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): fine-tuned, it would forget them"
        )
    if extra:
        return (
            f"the verified clips have labels the model lacks ({', '.join(extra[:5])}): "
            "fine-tuning would change its classes"
        )
    if list(model) != sorted(model) or any(k != v for k, v in label_folders(model).items()):
        return "the model's labels are not sorted, safe folder names, as training makes them"
    return None


def _prune(model: Path, keep: int = 3) -> None:
    """Keep the newest ``keep`` backups of ``model``."""
    backups = sorted(model.parent.glob(f"{model.stem}.before-*.pt"))
    for old in backups[:-keep]:
        old.unlink(missing_ok=True)


def retrain_video(out: Path, video_model: Path, config: RetrainConfig) -> RetrainReport:
    """One round for ``video_model`` when enough new votes came in (module doc)."""
    from clipminer.models.bundle import load_bundle

    if config.dataset is None:
        raise UsageError("[retrain] needs dataset = DIR (where the verified clips go)")
    decided, verified = decided_clips(out, config.rejected_as or None)
    mine = [
        r for r in _history(out)
        if r.get("model") == str(video_model) and r.get("status") in ("kept", "promoted")
    ]  # fmt: skip
    since = max(0, decided - (int(mine[-1]["decided"]) if mine else 0))
    if since < config.every_clips:
        return RetrainReport(
            "skipped", f"{since} clips decided since the last round; a round needs "
            f"{config.every_clips}", decided, model=str(video_model),
        )  # fmt: skip
    old = load_bundle(video_model, kind="video")
    problem = _labels_problem(old.labels, verified)
    if problem:
        return RetrainReport("skipped", problem, decided, model=str(video_model))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate = video_model.with_name(f"{video_model.stem}.candidate-{stamp}.pt")
    try:
        report = _round(out, video_model, old, candidate, stamp, decided, config)
    except BaseException as exc:
        for path in (candidate, candidate.with_name(candidate.name + ".train-state")):
            path.unlink(missing_ok=True)
        if isinstance(exc, Exception):
            _record(out, RetrainReport("failed", str(exc), decided, model=str(video_model)))
        raise
    log.info("retrain: %s", report.detail)
    _record(out, report)
    return report


def _round(
    out: Path, video_model: Path, old: Bundle, candidate: Path, stamp: str, decided: int,
    config: RetrainConfig,
) -> RetrainReport:  # fmt: skip
    """Export, fine-tune, compare on the test split, promote or keep."""
    from clipminer.config import VideoFitConfig, VideoSource, VideoTrainConfig
    from clipminer.curate.export import export
    from clipminer.devices import resolve_device
    from clipminer.models.bundle import load_bundle
    from clipminer.train_video import evaluate_video_bundle, load_videos, train_video

    assert config.dataset is not None
    dataset = Path(config.dataset)
    exported = export(
        out, dataset, splits=(0.7, 0.15, 0.15), rejected_as=config.rejected_as or None,
        force=dataset.exists(),
    )  # fmt: skip
    tested = sum(exported.counts.get("test", {}).values())
    if tested < config.min_val_clips:
        return RetrainReport(
            "kept", f"only {tested} verified test clips; a round compares the models on at "
            f"least {config.min_val_clips} (more votes, or a lower min_val_clips)",
            decided, model=str(video_model),
        )  # fmt: skip
    # the epoch is chosen on val; the models are compared on test, which neither saw
    train_config = VideoTrainConfig(
        arch=old.arch, weights=str(video_model), device=config.device,
        clip=old.input.clip_spec(), fit=VideoFitConfig(epochs=config.epochs),
    )  # fmt: skip
    train_video(
        VideoSource(videos=dataset / "train", val_dir=dataset / "val"), candidate,
        config=train_config,
    )  # fmt: skip
    candidate.with_name(candidate.name + ".train-state").unlink(missing_ok=True)  # large
    device = resolve_device(config.device)
    test = VideoSource(videos=dataset / "train", val_dir=dataset / "test")
    scores = []
    for path in (video_model, candidate):
        bundle = load_bundle(path, kind="video")
        videos = load_videos(test, labels=bundle.labels)
        result = evaluate_video_bundle(bundle, videos, device=device, clips_per_video=3, workers=0)
        scores.append(result.video.top1)
    old_top1, new_top1 = scores
    if new_top1 < old_top1:
        return RetrainReport(
            "kept", f"the fine-tuned model did worse on {tested} verified test clips "
            f"({new_top1:.3f} against {old_top1:.3f}); {video_model} stays",
            decided, old_top1, new_top1, str(video_model), str(candidate),
        )  # fmt: skip
    shutil.copy2(video_model, video_model.with_name(f"{video_model.stem}.before-{stamp}.pt"))
    candidate.replace(video_model)  # a rename: runs reading the old file keep it
    _prune(video_model)
    return RetrainReport(
        "promoted", f"video top-1 on {tested} verified test clips {old_top1:.3f} -> "
        f"{new_top1:.3f}; {video_model} replaced (the old one kept beside it)",
        decided, old_top1, new_top1, str(video_model), None,
    )  # fmt: skip
