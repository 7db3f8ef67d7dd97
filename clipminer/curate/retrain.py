"""From votes back to the re-labeller: fine-tune the video model on the verified clips and
put it in place only where it does no worse.

Once enough clips of OUT were decided by reviewers since the last round
(``every_clips``), one round: export the verified clips (accepted ones under their label,
rejected ones as ``rejected_as``, usually the background class) to ``dataset`` with a
validation split, fine-tune the current video model on it (its weights and preprocessing
kept), score the old and the new model on that validation split, and replace the model
file with the new one only when its video-level top-1 is at least the old one's (the old
file is kept beside it as ``<name>.before-<date>.pt``). The replacement is a rename, so a
run that has the old file open keeps reading the old weights.

A round is refused, with the reason, when the verified clips do not cover every label the
model has: a model fine-tuned on some of its classes would forget the others. What each
round found is appended to ``OUT/retrain.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from clipminer.curate import catalog, verdicts
from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path
from clipminer.settings import setting

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
        50, "Put a fine-tuned model in place only when the verified validation split has at "
        "least this many clips: on fewer, one clip decides (measured: a round promoted on 18 "
        "clips did worse on new videos).", min=1, metavar="N",
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


def decided_clips(out: Path) -> int:
    """Clips of ``out`` that reviewers decided (accepted or rejected) under its stored rule,
    dropped duplicates left out."""
    rule, _ = verdicts.rule_for_export(out, verdicts.RuleChoice(), override=False)
    clips = catalog.all_clips(out)
    dropped = catalog.read_duplicates(out)
    kept = [c for c in clips if not dropped.dropped(c)]
    return sum(v.status in DECIDED for v in verdicts.verdicts(out, kept, rule).values())


def retrain_video(out: Path, video_model: Path, config: RetrainConfig) -> RetrainReport:
    """One round for ``video_model`` when enough new votes came in (module doc)."""
    from clipminer.config import VideoFitConfig, VideoSource, VideoTrainConfig
    from clipminer.curate.export import export
    from clipminer.devices import resolve_device
    from clipminer.models.bundle import load_bundle
    from clipminer.train_video import evaluate_video_bundle, load_videos, train_video

    if config.dataset is None:
        raise UsageError("[retrain] needs dataset = DIR (where the verified clips go)")
    decided = decided_clips(out)
    done = [r for r in _history(out) if r.get("status") in ("kept", "promoted")]
    since = decided - (int(done[-1]["decided"]) if done else 0)
    if since < config.every_clips:
        return RetrainReport(
            "skipped", f"{since} clips decided since the last round; a round needs "
            f"{config.every_clips}", decided,
        )  # fmt: skip
    old = load_bundle(video_model, kind="video")
    dataset = Path(config.dataset)
    export(
        out, dataset, splits=(0.8, 0.2, 0.0), rejected_as=config.rejected_as or None,
        force=dataset.exists(),
    )  # fmt: skip
    exported = {p.name for p in (dataset / "train").iterdir() if p.is_dir()}
    missing = sorted(set(old.labels) - exported)
    if missing:
        report = RetrainReport(
            "skipped", f"the verified clips cover {len(old.labels) - len(missing)} of the "
            f"model's {len(old.labels)} labels (none yet for {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): fine-tuned, it would forget them",
            decided,
        )  # fmt: skip
        _record(out, report)
        return report
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate = video_model.with_name(f"{video_model.stem}.candidate-{stamp}.pt")
    source = VideoSource(videos=dataset / "train", val_dir=dataset / "val")
    train_config = VideoTrainConfig(
        arch=old.arch, weights=str(video_model), device=config.device,
        fit=VideoFitConfig(epochs=config.epochs),
    )  # fmt: skip
    train_video(source, candidate, config=train_config)
    candidate.with_name(candidate.name + ".train-state").unlink(missing_ok=True)  # large
    device = resolve_device(config.device)
    scores = []
    for path in (video_model, candidate):
        bundle = load_bundle(path, kind="video")
        videos = load_videos(source, labels=bundle.labels)
        result = evaluate_video_bundle(bundle, videos, device=device, clips_per_video=3, workers=0)
        scores.append(result.video.top1)
    old_top1, new_top1 = scores
    if len(videos.val) < config.min_val_clips:
        report = RetrainReport(
            "kept", f"only {len(videos.val)} verified validation clips (top-1 {old_top1:.3f} "
            f"-> {new_top1:.3f}); a promotion needs {config.min_val_clips}; {video_model} stays",
            decided, old_top1, new_top1, str(video_model), str(candidate),
        )  # fmt: skip
    elif new_top1 < old_top1:
        report = RetrainReport(
            "kept", f"the fine-tuned model did worse on the verified validation clips "
            f"({new_top1:.3f} against {old_top1:.3f}); {video_model} stays",
            decided, old_top1, new_top1, str(video_model), str(candidate),
        )  # fmt: skip
    else:
        shutil.copy2(video_model, video_model.with_name(f"{video_model.stem}.before-{stamp}.pt"))
        candidate.replace(video_model)  # a rename: runs reading the old file keep it
        report = RetrainReport(
            "promoted", f"video top-1 on the verified validation clips {old_top1:.3f} -> "
            f"{new_top1:.3f}; {video_model} replaced (the old one kept beside it)",
            decided, old_top1, new_top1, str(video_model), None,
        )  # fmt: skip
    log.info("retrain: %s", report.detail)
    _record(out, report)
    return report
