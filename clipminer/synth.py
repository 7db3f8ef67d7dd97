"""Deterministic synthetic data: a small toy world of actions.

The demo, the tests and the benchmarks use this instead of downloads. Each action
is a procedurally drawn scene with a moving object. As scene context does in real
footage, a single frame carries class evidence (each action has its own scene and
object), except for the motion-only pair ``sliding_left`` / ``sliding_right``: the
same red square on the same grey floor, moving left or right from a uniformly
random position, so that no single frame can tell them apart and only a video
model can. ``background`` is footage with no action: a drifting dull texture.

Everything is seeded: the same arguments give the same bytes.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clipminer.encode import VideoWriter
from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path

ACTIONS: tuple[str, ...] = ("bouncing", "spinning", "sliding_left", "sliding_right", "pulsing")
BACKGROUND = "background"
LABELS: tuple[str, ...] = (*ACTIONS, BACKGROUND)
MOTION_ONLY_PAIR: tuple[str, str] = ("sliding_left", "sliding_right")

Progress = Callable[[int, int], None]
"""Called with (done, total) as work advances."""


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _check_label(label: str) -> int:
    if label not in LABELS:
        raise ValueError(f"unknown synthetic label {label!r}; choose from {list(LABELS)}")
    return LABELS.index(label)


def _check_size(size: tuple[int, int], *, even: bool) -> None:
    height, width = size
    if height < 16 or width < 16:
        raise ValueError(f"size must be at least 16×16, got {size!r}")
    if even and (height % 2 or width % 2):
        raise ValueError(f"video sides must be even (H.264 yuv420p), got {size!r}")


# Scene colours (RGB, 0..1) and the object each action draws.
_SCENES: dict[str, tuple[tuple[float, float, float], str]] = {
    "bouncing": ((0.25, 0.55, 0.25), "rows"),
    "spinning": ((0.20, 0.30, 0.65), "diagonal"),
    "sliding_left": ((0.50, 0.50, 0.50), "columns"),
    "sliding_right": ((0.50, 0.50, 0.50), "columns"),
    "pulsing": ((0.45, 0.25, 0.55), "checker"),
    "background": ((0.45, 0.38, 0.30), "blotches"),
}


class Scene:
    """One instance of an action: a fixed backdrop and an object moving over time.

    Args:
        label: one of :data:`LABELS`.
        rng: source of this instance's random look and motion.
        size: (height, width) of the rendered frames.
    """

    def __init__(self, label: str, rng: np.random.Generator, size: tuple[int, int]) -> None:
        _check_label(label)
        self.label = label
        self.size = size
        height, width = size
        short = min(height, width)
        base, pattern = _SCENES[label]
        colour = np.clip(np.array(base) + rng.uniform(-0.06, 0.06, 3), 0, 1)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        period = rng.uniform(0.08, 0.16) * short
        phase = rng.uniform(0, 2 * math.pi)
        amplitude = rng.uniform(0.04, 0.09)
        if pattern == "rows":
            texture = np.sin(2 * math.pi * yy / period + phase)
        elif pattern == "columns":
            texture = np.sin(2 * math.pi * xx / period + phase)
        elif pattern == "diagonal":
            texture = np.sin(2 * math.pi * (xx + yy) / (1.4 * period) + phase)
        elif pattern == "checker":
            texture = np.sign(np.sin(2 * math.pi * xx / period) * np.sin(2 * math.pi * yy / period))
        else:
            texture = np.zeros((height, width), np.float32)
            amplitude *= 0.5
        blocks = rng.uniform(-1, 1, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
        blotches = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]
        weight = 0.12 if label == BACKGROUND else 0.04
        backdrop = colour + amplitude * texture[..., None] + weight * blotches
        self._backdrop = (np.clip(backdrop, 0, 1) * 255).astype(np.uint8)
        self._drift = rng.uniform(-0.08, 0.08, 2) * short  # pixels per second (background)
        # Object parameters, in pixels and seconds.
        self._x = rng.uniform(0.2, 0.8) * width
        self._y = rng.uniform(0.3, 0.7) * height
        self._phase = rng.uniform(0, 2 * math.pi)
        self._hz = rng.uniform(0.8, 1.5)
        self._radius = rng.uniform(0.08, 0.12) * short
        self._half_side = rng.uniform(0.07, 0.1) * short
        self._speed = rng.uniform(0.6, 0.9) * width
        self._spin = rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 4.0)
        self._object_colour = np.clip(
            np.array(
                {
                    "bouncing": (0.95, 0.55, 0.1),
                    "spinning": (0.95, 0.9, 0.2),
                    "sliding_left": (0.85, 0.12, 0.1),
                    "sliding_right": (0.85, 0.12, 0.1),
                    "pulsing": (0.95, 0.95, 0.95),
                    "background": (0, 0, 0),
                }[label]
            )
            + rng.uniform(-0.05, 0.05, 3),
            0,
            1,
        )
        self._object_rgb = (self._object_colour * 255).astype(np.uint8)

    def render(self, t_seconds: float) -> np.ndarray:
        """The frame at ``t_seconds`` from the instance's start: uint8 H×W×3 RGB."""
        if self.label == BACKGROUND:
            dy, dx = (self._drift * t_seconds).astype(int)
            return np.roll(self._backdrop, (int(dy), int(dx)), axis=(0, 1))
        frame = self._backdrop.copy()
        self._draw_object(frame, t_seconds)
        return frame

    def _draw_object(self, frame: np.ndarray, t: float) -> None:
        height, width = self.size
        label = self.label
        if label == "bouncing":
            floor = 0.88 * height - self._radius
            bounce = abs(math.sin(math.pi * self._hz * t + self._phase)) * 0.5 * height
            self._disc(frame, self._x, floor - bounce, self._radius)
        elif label == "pulsing":
            radius = self._radius * (1 + 0.45 * math.sin(2 * math.pi * self._hz * t + self._phase))
            self._disc(frame, self._x, self._y, radius)
        elif label == "spinning":
            self._bar(frame, self._spin * t + self._phase)
        else:
            direction = -1.0 if label == "sliding_left" else 1.0
            span = width + 2 * self._half_side
            x = (self._x + direction * self._speed * t) % span - self._half_side
            self._box(frame, x, self._y, self._half_side)

    def _window(
        self, cx: float, cy: float, reach: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        height, width = self.size
        y0, y1 = max(0, int(cy - reach)), min(height, int(cy + reach) + 1)
        x0, x1 = max(0, int(cx - reach)), min(width, int(cx + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            return None
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        return slice(y0, y1), slice(x0, x1), yy - cy, xx - cx

    def _disc(self, frame: np.ndarray, cx: float, cy: float, radius: float) -> None:
        window = self._window(cx, cy, radius)
        if window is not None:
            rows, cols, dy, dx = window
            frame[rows, cols][dy * dy + dx * dx <= radius * radius] = self._object_rgb

    def _box(self, frame: np.ndarray, cx: float, cy: float, half: float) -> None:
        window = self._window(cx, cy, half)
        if window is not None:
            rows, cols, dy, dx = window
            frame[rows, cols][(np.abs(dy) <= half) & (np.abs(dx) <= half)] = self._object_rgb

    def _bar(self, frame: np.ndarray, angle: float) -> None:
        half_length, half_width = 2.6 * self._radius, 0.35 * self._radius
        window = self._window(self._x, self._y, half_length)
        if window is not None:
            rows, cols, dy, dx = window
            along = dx * math.cos(angle) + dy * math.sin(angle)
            across = -dx * math.sin(angle) + dy * math.cos(angle)
            mask = (np.abs(along) <= half_length) & (np.abs(across) <= half_width)
            frame[rows, cols][mask] = self._object_rgb


def scene(label: str, *, seed: int, index: int, size: tuple[int, int]) -> Scene:
    """The ``index``-th instance of ``label`` for ``seed``, independent of other items."""
    return Scene(label, _rng(seed, _check_label(label), index), size)


# -- (a) images ------------------------------------------------------------------------


def make_images(
    out: str | os.PathLike[str],
    *,
    per_class: int = 40,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    labels: tuple[str, ...] = LABELS,
    progress: Progress | None = None,
) -> dict[str, list[Path]]:
    """Write an ImageFolder tree ``out/<label>/<label>_<i>.jpg``; return the paths by label."""
    _check_size(size, even=False)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    out = Path(out)
    written: dict[str, list[Path]] = {}
    total, done = per_class * len(labels), 0
    for label in labels:
        written[label] = []
        for i in range(per_class):
            item = scene(label, seed=seed, index=i, size=size)
            t = float(_rng(seed, _check_label(label), i, 1).uniform(0, 10))
            path = out / label / f"{label}_{i:05d}.jpg"
            with atomic_path(path) as tmp:
                Image.fromarray(item.render(t)).save(tmp, format="JPEG", quality=90)
            written[label].append(path)
            done += 1
            if progress:
                progress(done, total)
    return written


# -- (b) short clips -------------------------------------------------------------------


def _write_clip(path: Path, item: Scene, *, seconds: float, fps: int) -> None:
    with VideoWriter(path, fps=fps, size=item.size) as writer:
        for k in range(max(1, round(seconds * fps))):
            writer.write(item.render(k / fps))


def ucf_name(label: str) -> str:
    """UCF-101 style class name: ``sliding_left`` -> ``SlidingLeft``."""
    return "".join(part.capitalize() for part in label.split("_"))


@dataclass(frozen=True)
class UcfTree:
    """Where :func:`make_ucf101` put the videos and the split files."""

    root: Path
    splits: Path
    train: int
    test: int


def make_clips(
    out: str | os.PathLike[str],
    *,
    per_class: int = 12,
    seconds: float = 3.0,
    fps: int = 25,
    size: tuple[int, int] = (120, 160),
    seed: int = 0,
    labels: tuple[str, ...] = LABELS,
    progress: Progress | None = None,
) -> dict[str, list[Path]]:
    """Write a folder-per-class tree ``out/<label>/<label>_<i>.mp4``; return paths by label."""
    _check_size(size, even=True)
    out = Path(out)
    written: dict[str, list[Path]] = {}
    total, done = per_class * len(labels), 0
    for label in labels:
        written[label] = []
        for i in range(per_class):
            path = out / label / f"{label}_{i:04d}.mp4"
            _write_clip(
                path, scene(label, seed=seed, index=10_000 + i, size=size), seconds=seconds, fps=fps
            )
            written[label].append(path)
            done += 1
            if progress:
                progress(done, total)
    return written


def make_ucf101(
    out: str | os.PathLike[str],
    *,
    per_class: int = 12,
    seconds: float = 3.0,
    fps: int = 25,
    size: tuple[int, int] = (120, 160),
    seed: int = 0,
    clips_per_group: int = 4,
    labels: tuple[str, ...] = LABELS,
    progress: Progress | None = None,
) -> UcfTree:
    """Write a UCF-101 style tree: ``out/videos/<Class>/v_<Class>_gNN_cNN.avi`` and
    ``out/splits/{classInd,trainlist01,testlist01}.txt`` (CRLF, as the originals).

    As in UCF-101 split 1, the first groups (about 28 %) of every class are the test set,
    and at least one group is in each split: with fewer than two groups' worth of clips
    per class the groups get smaller (4 clips per class: 2 groups of 2).

    Raises:
        UsageError: ``per_class`` below 2 (one clip cannot be in both splits).
    """
    _check_size(size, even=True)
    if per_class < 2:
        raise UsageError(
            f"--per-class {per_class}: a UCF-101 layout needs at least 2 clips per class, "
            "one for each split"
        )
    out = Path(out)
    root, splits = out / "videos", out / "splits"
    clips_per_group = min(clips_per_group, per_class // 2)
    groups = math.ceil(per_class / clips_per_group)
    test_groups = min(max(1, round(groups * 0.28)), groups - 1)
    class_lines, train_lines, test_lines = [], [], []
    total, done = per_class * len(labels), 0
    for number, label in enumerate(labels, start=1):
        name = ucf_name(label)
        class_lines.append(f"{number} {name}")
        for i in range(per_class):
            group, clip = i // clips_per_group + 1, i % clips_per_group + 1
            relative = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
            _write_clip(
                root / relative,
                scene(label, seed=seed, index=20_000 + i, size=size),
                seconds=seconds,
                fps=fps,
            )
            if group <= test_groups:
                test_lines.append(relative)
            else:
                train_lines.append(f"{relative} {number}")
            done += 1
            if progress:
                progress(done, total)
    for filename, lines in (
        ("classInd.txt", class_lines),
        ("trainlist01.txt", train_lines),
        ("testlist01.txt", test_lines),
    ):
        with atomic_path(splits / filename) as tmp:
            tmp.write_bytes("".join(f"{line}\r\n" for line in lines).encode())
    return UcfTree(root=root, splits=splits, train=len(train_lines), test=len(test_lines))


# -- (c) long videos with known segments -----------------------------------------------


@dataclass(frozen=True)
class TruthSegment:
    """One action in a generated long video."""

    label: str
    time_start_seconds: float
    time_end_seconds: float

    def __post_init__(self) -> None:
        if not self.time_end_seconds > self.time_start_seconds >= 0:
            raise ValueError(f"bad segment times in {self!r}")


@dataclass(frozen=True)
class LongVideo:
    """A generated long video and its ground truth."""

    path: Path
    truth_csv: Path
    segments: tuple[TruthSegment, ...]
    duration_seconds: float
    frames: int


def plan_segments(
    duration_seconds: float,
    *,
    seed: int,
    actions: tuple[str, ...] = ACTIONS,
    action_seconds: tuple[float, float] = (4.0, 8.0),
    gap_seconds: tuple[float, float] = (3.0, 8.0),
) -> tuple[TruthSegment, ...]:
    """Lay out actions separated by background; every action appears before any repeats."""
    if not actions:
        raise ValueError("actions must not be empty")
    for label in actions:
        if label == BACKGROUND:
            raise ValueError(f"{BACKGROUND!r} is not an action")
        _check_label(label)
    rng = _rng(seed, 99)
    segments: list[TruthSegment] = []
    t = float(rng.uniform(*gap_seconds))
    order: list[str] = []
    while True:
        if not order:
            order = list(rng.permutation(actions))
        length = float(rng.uniform(*action_seconds))
        if t + length > duration_seconds - 1.0:
            break
        segments.append(TruthSegment(str(order.pop()), round(t, 3), round(t + length, 3)))
        t += length + float(rng.uniform(*gap_seconds))
    return tuple(segments)


def frame_times(duration_seconds: float, *, fps: int, variable: bool, seed: int) -> Iterator[float]:
    """Presentation times of a generated video; variable rate mixes 1/fps and 2/fps steps."""
    rng = _rng(seed, 7)
    t, step = 0.0, 1.0 / fps
    while t < duration_seconds - 1e-9:
        yield round(t, 6)
        t += step * (2 if variable and rng.random() < 0.4 else 1)


def make_long_video(
    path: str | os.PathLike[str],
    *,
    duration_seconds: float = 300.0,
    size: tuple[int, int] = (240, 320),
    fps: int = 30,
    seed: int = 0,
    variable_frame_rate: bool = False,
    actions: tuple[str, ...] = ACTIONS,
    action_seconds: tuple[float, float] = (4.0, 8.0),
    gap_seconds: tuple[float, float] = (3.0, 8.0),
    cuts: bool = False,
    progress: Progress | None = None,
) -> LongVideo:
    """Write a long H.264 video with actions at known times and background between.

    The ground truth goes to ``<path stem>.truth.csv`` beside the video, with the
    columns ``label,time_start,time_end`` in seconds. Every change of scene (background
    to action and back) is a hard cut; with ``cuts``, the middle of every other action
    and of every long background stretch is a cut to another view of the same thing,
    and every third action ends in a fade through black, and the shot boundaries go to
    ``<path stem>.shots.csv`` (:data:`clipminer.mining.shots.SHOT_COLUMNS`).
    """
    _check_size(size, even=True)
    if duration_seconds <= 0:
        raise ValueError(f"duration_seconds must be positive, got {duration_seconds}")
    path = Path(path)
    segments = plan_segments(
        duration_seconds,
        seed=seed,
        actions=actions,
        action_seconds=action_seconds,
        gap_seconds=gap_seconds,
    )
    times = list(frame_times(duration_seconds, fps=fps, variable=variable_frame_rate, seed=seed))
    pieces, fades = _plan_shots(segments, duration_seconds, cuts=cuts)
    with VideoWriter(path, fps=fps, size=size) as writer:
        piece, current, start = -1, None, 0.0
        for k, t in enumerate(times):
            while piece + 1 < len(pieces) and t >= pieces[piece + 1][0]:
                piece += 1
                start, label = pieces[piece]
                current = scene(label, seed=seed, index=30_000 + piece, size=size)
            assert current is not None
            frame = current.render(t - start)
            gain = _fade_gain(t, fades)
            if gain < 1.0:
                frame = (frame * gain).astype(np.uint8)
            writer.write(frame, pts_seconds=t)
            if progress and (k % 30 == 0 or k == len(times) - 1):
                progress(k + 1, len(times))
    truth_csv = path.with_name(f"{path.stem}.truth.csv")
    write_truth_csv(truth_csv, segments)
    if cuts:
        _write_shot_truth(path.with_name(f"{path.stem}.shots.csv"), pieces, fades, times)
    return LongVideo(
        path=path,
        truth_csv=truth_csv,
        segments=segments,
        duration_seconds=duration_seconds,
        frames=len(times),
    )


FADE_SECONDS = 0.5
"""How long a synthetic fade takes to black, and back."""
BLACK_SECONDS = 0.4
"""How long a synthetic fade stays black."""


def _plan_shots(
    segments: tuple[TruthSegment, ...], duration_seconds: float, *, cuts: bool
) -> tuple[list[tuple[float, str]], list[float]]:
    """(pieces: (start seconds, label) of every shot, fades: start of each black stretch).

    Background before, between and after the actions; with ``cuts``, extra shots in the
    middle of every other action and of background stretches over 6 s, and a fade
    through black after every third action (inside the background that follows it).
    """
    pieces: list[tuple[float, str]] = [(0.0, BACKGROUND)]
    fades: list[float] = []
    ends = [seg.time_start_seconds for seg in segments[1:]] + [duration_seconds][: len(segments)]
    for k, (seg, next_start) in enumerate(zip(segments, ends, strict=True)):
        start, end = seg.time_start_seconds, seg.time_end_seconds
        pieces.append((start, seg.label))
        if cuts and k % 2 == 1 and end - start >= 3.0:
            pieces.append((round((start + end) / 2, 3), seg.label))
        pieces.append((end, BACKGROUND))
        if cuts and k % 3 == 2 and next_start - end >= 2 * FADE_SECONDS + BLACK_SECONDS + 1.0:
            fades.append(round(end + FADE_SECONDS, 3))
        elif cuts and next_start - end >= 6.0:
            pieces.append((round((end + next_start) / 2, 3), BACKGROUND))
    return pieces, fades


def _fade_gain(t: float, fades: list[float]) -> float:
    """Brightness factor at ``t``: 0 while black, ramps of FADE_SECONDS either side."""
    gain = 1.0
    for black in fades:
        if black - FADE_SECONDS <= t < black:
            gain = min(gain, (black - t) / FADE_SECONDS)
        elif black <= t < black + BLACK_SECONDS:
            gain = 0.0
        elif black + BLACK_SECONDS <= t < black + BLACK_SECONDS + FADE_SECONDS:
            gain = min(gain, (t - black - BLACK_SECONDS) / FADE_SECONDS)
    return gain


def _write_shot_truth(
    path: Path, pieces: list[tuple[float, str]], fades: list[float], times: list[float]
) -> None:
    """The true boundaries: a cut is at the first frame of the new shot; a fade's gap is
    its black stretch."""
    from clipminer.mining.shots import ShotBoundary, write_shots_csv

    def first_at(t: float) -> float:
        return min((x for x in times if x >= t), default=t)

    boundaries = [
        ShotBoundary("cut", first_at(start), first_at(start), first_at(start), 1.0)
        for start, _ in pieces[1:]
    ] + [
        ShotBoundary("fade", black + BLACK_SECONDS / 2, black, black + BLACK_SECONDS, 1.0)
        for black in fades
    ]
    write_shots_csv(path, sorted(boundaries, key=lambda b: b.time))


def write_truth_csv(path: Path, segments: tuple[TruthSegment, ...]) -> None:
    """Write ``label,time_start,time_end`` rows atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "time_start", "time_end"])
        for seg in segments:
            writer.writerow(
                [seg.label, f"{seg.time_start_seconds:.3f}", f"{seg.time_end_seconds:.3f}"]
            )


def read_truth_csv(path: str | os.PathLike[str]) -> tuple[TruthSegment, ...]:
    """Read a ground-truth CSV written by :func:`make_long_video`."""
    with Path(path).open(newline="") as handle:
        return tuple(
            TruthSegment(row["label"], float(row["time_start"]), float(row["time_end"]))
            for row in csv.DictReader(handle)
        )


def repeat_video(
    source: str | os.PathLike[str], dest: str | os.PathLike[str], *, times: int
) -> Path:
    """``source``'s video stream ``times`` times in a row, by stream copy (no re-encoding).

    A cheap way to make long test videos (a 10-minute file from a 1-minute one).
    """
    import av

    source, dest = Path(source), Path(dest)
    with av.open(str(source)) as container:
        span = container.streams.video[0].duration
    if not span:
        raise ValueError(f"{source}: the video stream has no duration")
    with atomic_path(dest) as tmp, av.open(str(tmp), "w") as out:
        with av.open(str(source)) as first:
            out_stream = out.add_stream_from_template(first.streams.video[0])
        for k in range(times):
            with av.open(str(source)) as container:
                for packet in container.demux(container.streams.video[0]):
                    if packet.dts is None or packet.pts is None:
                        continue
                    packet.pts += k * span
                    packet.dts += k * span
                    packet.stream = out_stream
                    out.mux(packet)
    return dest


def reupload(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    crf: int = 30,
    scale: float = 1.0,
    seconds: float | None = None,
) -> Path:
    """``source`` decoded and encoded again, as a video site re-encodes an upload: at x264
    ``crf``, its sides times ``scale`` (kept even), the first ``seconds`` (all when None).
    A near-duplicate with known provenance, for dedup's tests, demo and benchmarks."""
    from clipminer.decode import iter_frames, probe

    info = probe(source)
    size = (round(info.height * scale) // 2 * 2, round(info.width * scale) // 2 * 2)
    with VideoWriter(dest, fps=info.average_fps or 25, size=size, crf=crf) as writer:
        for frame in iter_frames(source, size=size):
            if seconds is not None and frame.pts_seconds >= seconds:
                break
            writer.write(frame.pixels, pts_seconds=frame.pts_seconds)
    return Path(dest)
