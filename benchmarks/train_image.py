"""Training-step and data-loader throughput of train-image, side by side in one run.

Prints one JSON line: images/s of a training step alone (batches already in memory),
images/s of the DataLoader alone (JPEG decode + augmentation, ``--workers`` processes),
and their ratio (target: the loader >= 2x the step rate with 2 workers).

Usage: python benchmarks/train_image.py [--arch densenet121] [--image-size 224]
       [--batch-size 16] [--workers 2] [--steps 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch.utils.data import DataLoader

from clipminer import synth
from clipminer.data.images import ImageDataset, scan_image_folder
from clipminer.models import image
from clipminer.train import loader_kwargs, to_channels_last
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out"))
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    root = args.work / "train_image_jpgs"
    if not root.exists():  # scraped photos are larger than the input size: decode costs
        synth.make_images(root, per_class=40, size=(360, 480), seed=0)
    items = scan_image_folder(root).items
    size = (args.image_size, args.image_size)
    dataset = ImageDataset(items, train_transform(size, IMAGENET_MEAN, IMAGENET_STD),
                           size_hint=2 * args.image_size)  # fmt: skip
    device = torch.device("cpu")
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                        **loader_kwargs(args.workers, device))  # fmt: skip
    batches = args.steps + 1
    started = None
    for k, _ in enumerate(itertools.islice(itertools.cycle(loader), batches * 2)):
        if k == 1:  # the first batch pays for starting the workers
            started = time.perf_counter()
    assert started is not None
    loader_rate = (batches * 2 - 1) * args.batch_size / (time.perf_counter() - started)

    model = image.build(args.arch, num_classes=6)
    to_channels_last(model.train())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(args.batch_size, 3, *size).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 6, (args.batch_size,))
    timings = []
    for _ in range(batches):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - t)
    step_rate = args.batch_size / (sum(timings[1:]) / len(timings[1:]))
    print(json.dumps({
        "benchmark": "train_image",
        "arch": args.arch, "image_size": args.image_size, "batch_size": args.batch_size,
        "workers": args.workers, "cpus": os.cpu_count(),
        "step_images_per_s": round(step_rate, 2),
        "loader_images_per_s": round(loader_rate, 2),
        "loader_vs_step": round(loader_rate / step_rate, 2),
        "source_images": f"{len(items)} JPEGs of 480x360",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
