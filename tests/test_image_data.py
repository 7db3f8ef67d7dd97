"""Image folders: what is read, what is skipped, and the hash-keyed split."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from clipminer import synth
from clipminer.data.images import scan_image_folder, split_by_hash
from clipminer.errors import UsageError


def _low_hash_files(root: Path, fraction: float) -> set[Path]:
    """Per class folder, the images whose SHA-256 quantile is below ``fraction``, keeping at
    least one on each side of the split (the rule of :func:`split_by_hash`, from the bytes)."""
    chosen: set[Path] = set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        quantiles = {
            path: int(hashlib.sha256(path.read_bytes()).hexdigest()[:13], 16) / 16**13
            for path in folder.glob("*.jpg")
        }
        ranked = sorted(quantiles, key=lambda path: quantiles[path])
        low = [path for path in ranked if quantiles[path] < fraction]
        chosen.update(low[: len(ranked) - 1] or ranked[:1])
    return chosen


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    synth.make_images(
        root, per_class=20, size=(32, 32), seed=1, labels=("bouncing", "spinning", "background")
    )
    return root


def test_split_is_deterministic_stratified_and_stable(folder: Path, tmp_path: Path) -> None:
    scan = scan_image_folder(folder)
    train, val = split_by_hash(scan.items, 0.25)
    again = split_by_hash(list(reversed(scan.items)), 0.25)
    assert {i.path for i in val} == {i.path for i in again[1]}
    # Validation holds exactly the files whose SHA-256, read as a fraction, is below 0.25.
    assert {i.path for i in val} == _low_hash_files(folder, 0.25)
    assert {i.path for i in train} == set(folder.rglob("*.jpg")) - {i.path for i in val}
    assert len(train) + len(val) == 60
    # Adding images keeps every old file where it was.
    synth.make_images(tmp_path / "more", per_class=30, size=(32, 32), seed=2, labels=("bouncing",))
    for path in (tmp_path / "more" / "bouncing").iterdir():
        shutil.copy(path, folder / "bouncing" / f"new_{path.name}")
    bigger = scan_image_folder(folder)
    _, val2 = split_by_hash(bigger.items, 0.25)
    old_val = {i.path for i in val}
    new_val = {i.path for i in val2}
    assert old_val <= new_val
    assert all(p.name.startswith("new_") for p in new_val - old_val)


def test_each_class_keeps_one_validation_image(folder: Path) -> None:
    scan = scan_image_folder(folder)
    _, val = split_by_hash(scan.items, 0.01)
    assert {i.label for i in val} == {0, 1, 2}


def test_corrupt_and_foreign_files(folder: Path) -> None:
    good = next((folder / "spinning").iterdir())
    data = good.read_bytes()
    (folder / "spinning" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "spinning" / "text.jpg").write_text("<html>not an image</html>")
    (folder / "spinning" / "notes.txt").write_text("ignored: not an image suffix")
    (folder / "spinning" / ".partial.jpg").write_bytes(data)
    (folder / "manifest.csv").write_text("action,path\n")
    scan = scan_image_folder(folder)
    skipped = {p.name: why for p, why in scan.skipped}
    assert set(skipped) == {"truncated.jpg", "text.jpg"}
    assert all("not a readable image" in why for why in skipped.values())
    assert scan.counts() == {"background": 20, "bouncing": 20, "spinning": 20}


def test_requested_labels_and_unknown_classes(folder: Path) -> None:
    scan = scan_image_folder(folder, labels=("spinning", "bouncing", "pulsing"))
    assert scan.labels == ("spinning", "bouncing", "pulsing")
    assert scan.unknown == {"background": 20}
    assert scan.counts() == {"spinning": 20, "bouncing": 20, "pulsing": 0}


def test_missing_or_empty_root(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        scan_image_folder(tmp_path / "nope")
    with pytest.raises(UsageError, match="no class folders"):
        scan_image_folder(tmp_path)
