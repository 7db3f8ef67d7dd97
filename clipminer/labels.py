"""Matching class names across naming styles."""

from __future__ import annotations


def label_key(label: str) -> str:
    """Labels match across naming styles: "SlidingLeft", "sliding_left", "sliding left".

    Lower case, letters and digits only; used wherever labels from different sources
    (UCF-101 folders, image folders, search queries) must meet.
    """
    return "".join(ch for ch in label.lower() if ch.isalnum())
