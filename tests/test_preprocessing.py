"""Preprocessing travels with the weights: the crop rule is part of the bundle's input spec."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from clipminer.models.bundle import InputSpec, load_bundle, save_bundle
from clipminer.models.image import ImageScorer


def test_crop_fraction_round_trips_and_old_bundles_get_the_old_rule(tiny_models, tmp_path) -> None:
    video = load_bundle(tiny_models[1])
    assert video.input.crop_fraction == 0.875
    assert video.input.clip_spec().short_side == 36  # 32 / 0.875, even
    wide = replace(video, input=replace(video.input, crop_fraction=0.5))
    again = load_bundle(save_bundle(wide, tmp_path / "wide.pt"))
    assert again.input.crop_fraction == 0.5
    assert again.input.clip_spec().short_side == 64
    old = video.input.to_dict()
    del old["crop_fraction"]  # what bundles written before the field hold
    assert InputSpec.from_dict(old).crop_fraction == 0.875


def test_the_image_scorer_crops_as_its_bundle_says(tiny_models, tmp_path: Path) -> None:
    image = load_bundle(tiny_models[0])
    full = save_bundle(
        replace(image, input=replace(image.input, crop_fraction=1.0)), tmp_path / "f.pt"
    )
    frames = np.zeros((1, 64, 64, 3), np.uint8)
    frames[:, :, :8] = 255  # a bright border column that only an uncropped view keeps
    torch.manual_seed(0)
    cropped = ImageScorer(tiny_models[0], device="cpu")(frames)
    whole = ImageScorer(full, device="cpu")(frames)
    assert not np.allclose(cropped, whole)
