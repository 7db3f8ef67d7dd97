"""Training-step and data-loader throughput of train-image, side by side in one run.

Prints one JSON line: images/s of a training step alone (batches already in memory),
images/s of the DataLoader alone (JPEG decode + augmentation, ``--workers`` processes),
and their ratio (target: the loader >= 2x the step rate with 2 workers).

Warm-up, untimed: one training step; for the loader, the batches that pay for starting
the workers (one per worker). Every timed loader batch is read and decoded from the JPEG
files by the workers: the loader is iterated epoch after epoch (a new shuffled pass each
time), never replayed from batches kept in memory.

Usage: python benchmarks/train_image.py [--arch densenet121] [--image-size 224]
       [--batch-size 16] [--workers 2] [--steps 4] [--loader-batches 24] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch.utils.data import DataLoader

from clipminer import synth
from clipminer.data.images import ImageDataset, scan_image_folder
from clipminer.devices import to_channels_last
from clipminer.models import image
from clipminer.train import loader_kwargs
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out"))
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps")
    parser.add_argument("--loader-batches", type=int, default=24, help="timed loader batches")
    parser.add_argument(
        "--quick", action="store_true", help="resnet18 at 112 px, 2 steps, 8 loader batches"
    )
    args = parser.parse_args()
    if args.quick:
        args.arch, args.image_size, args.steps, args.loader_batches = "resnet18", 112, 2, 8
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
    warm_batches = max(1, args.workers)  # the first batches pay for starting the workers
    wanted = warm_batches + args.loader_batches
    seen, timed_images, epochs, started = 0, 0, 0, 0.0
    while seen < wanted:  # a fresh pass over the files each epoch
        epochs += 1
        for batch, _ in loader:
            seen += 1
            if seen == warm_batches:
                started = time.perf_counter()
            elif seen > warm_batches:
                timed_images += len(batch)
            if seen == wanted:
                break
    loader_rate = timed_images / (time.perf_counter() - started)

    model = image.build(args.arch, num_classes=6)
    to_channels_last(model.train())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(args.batch_size, 3, *size).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 6, (args.batch_size,))
    timings = []
    for _ in range(args.steps + 1):  # the first step warms up allocators: not timed
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
        "timed_steps": args.steps, "timed_loader_batches": args.loader_batches,
        "loader_epochs": epochs,
        "source_images": f"{len(items)} JPEGs of 480x360",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
