"""Cutting clips: their names, the early cutter that cuts while the pass goes on, and
the final cut of each chosen candidate into the video's staging folder."""

from __future__ import annotations

import concurrent.futures
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from clipminer.config import FindClipsConfig
from clipminer.cut import CutResult, cut_clip
from clipminer.errors import ClipminerError
from clipminer.fsutil import safe_component
from clipminer.layout import CLIPS_DIR, staging_folder
from clipminer.mining.results import Candidate
from clipminer.segments import Segment
from clipminer.store import VideoPath


def clip_name(folder: Path, label: str, seg: Segment) -> tuple[str, str]:
    """(label folder, file stem) of a clip: ``<label>/<video>_<start>_<end>``."""
    stem = f"{folder.name}_{seg.time_start_seconds:08.2f}_{seg.time_end_seconds:08.2f}"
    return safe_component(label), stem


class EarlyCutter:
    """Cuts clips in a worker thread as segments close, while the pass goes on.

    Which segments become clips (the best N, merges) is final only at the end: a clip cut
    early is used when a final candidate has the same label and range, and removed
    otherwise. Only the source's range is re-read, so this overlaps the pass's decoding
    and scoring (on a GPU machine the CPU is otherwise idle).
    """

    def __init__(
        self,
        video: VideoPath,
        folder: Path,
        mode: Literal["reencode", "copy"],
        x264: tuple[int, str] = (18, "veryfast"),
        turns: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        self.video, self.folder, self.mode = video, folder, mode
        self.crf, self.preset = x264
        self.turns = turns if turns is not None and mode == "reencode" else contextlib.nullcontext()
        """Held while a clip is encoded (see ``ClipMiner.turns``)."""
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cut")
        self._jobs: dict[tuple[str, str], concurrent.futures.Future[CutResult]] = {}

    def submit(self, seg: Segment, label: str) -> None:
        key = clip_name(self.folder, label, seg)
        if key not in self._jobs:
            dest = staging_folder(self.folder) / CLIPS_DIR / key[0] / f"{key[1]}.mp4"
            start, end = seg.time_start_seconds, seg.time_end_seconds
            self._jobs[key] = self._pool.submit(self._cut, dest, start, end)

    def _cut(self, dest: Path, start: float, end: float) -> CutResult:
        with self.turns:
            return cut_clip(
                self.video, dest, start, end, mode=self.mode, crf=self.crf, preset=self.preset
            )

    def take(self, key: tuple[str, str]) -> CutResult | None:
        """The early cut of ``key``, or None (never cut, or it failed: cut it again)."""
        job = self._jobs.pop(key, None)
        if job is None:
            return None
        try:
            return job.result()
        except ClipminerError:
            return None

    def close(self) -> None:
        """Wait for running cuts and remove the clips no candidate took."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for job in self._jobs.values():
            if job.done() and not job.cancelled() and job.exception() is None:
                job.result().path.unlink(missing_ok=True)
        self._jobs.clear()


def cut_candidate(
    config: FindClipsConfig,
    video: VideoPath,
    candidate: Candidate,
    folder: Path,
    used: set[str],
    cutter: EarlyCutter | None,
) -> Candidate:
    """Cut one clip into the staging folder under a name no other clip of the video has
    (or take the one the early cutter made)."""
    seg = candidate.segment
    label_dir, name = clip_name(folder, candidate.final_label, seg)
    result = cutter.take((label_dir, name)) if cutter else None
    if f"{label_dir}/{name}" in used:
        name += f"_{candidate.clip_id}"
        result = None
    used.add(f"{label_dir}/{name}")
    relative = Path(folder.parent.name) / folder.name / CLIPS_DIR / label_dir / f"{name}.mp4"
    mode: Literal["reencode", "copy"] = "copy" if config.cut == "copy" else "reencode"
    if result is None:
        result = cut_clip(
            video,
            staging_folder(folder) / CLIPS_DIR / label_dir / f"{name}.mp4",
            seg.time_start_seconds,
            seg.time_end_seconds,
            mode=mode,
            crf=config.cut_crf,
            preset=config.cut_preset,
        )
    return replace(
        candidate,
        clip_path=relative.as_posix(),
        clip_start_seconds=result.time_start_seconds,
        clip_end_seconds=result.time_end_seconds,
    )
