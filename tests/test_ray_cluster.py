"""A two-node Ray cluster on this machine (Ray's own ``ray.cluster_utils.Cluster``, every
node on 127.0.0.1, each started in a working directory of its own) mines a bucket of
videos into a bucket, and losing the second node mid-run loses nothing."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from clipminer.batch import Outcome, run_batch

from .helpers import batch_config, make_videos

pytest.importorskip("ray")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

from clipminer.testing import LoopbackS3


def test_two_nodes_without_a_shared_filesystem_lose_nothing_when_one_goes(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("CLIPMINER_CACHE", str(tmp_path / "cache"))
    for name in ("head", "second", "driver"):
        (tmp_path / name).mkdir()
    make_videos(tmp_path / "in", 6)
    with LoopbackS3() as s3:
        import s3fs

        bucket = s3.bucket(f"t-{uuid.uuid4().hex[:12]}")
        fs = s3fs.S3FileSystem()
        for video in sorted((tmp_path / "in").glob("*.mp4")):
            fs.put_file(str(video), f"{bucket[5:]}/in/{video.name}")
        fs.put_file(str(tiny_models[0]), f"{bucket[5:]}/models/image.pt")
        fs.put_file(str(tiny_models[1]), f"{bucket[5:]}/models/video.pt")
        monkeypatch.chdir(tmp_path / "head")
        cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"}
        )
        try:
            monkeypatch.chdir(tmp_path / "second")
            second = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            cluster.wait_for_nodes()
            monkeypatch.chdir(tmp_path / "driver")
            assert cluster.address.startswith("127.0.0.1:")
            config = replace(
                batch_config((f"{bucket}/models/image.pt", f"{bucket}/models/video.pt")),
                engine="ray",
                ray_address=cluster.address,
                workers=2,
            )
            seen: list[Outcome] = []

            def lose_the_second_node(outcome: Outcome) -> None:
                seen.append(outcome)
                if len(seen) == 1:  # the other worker is mid-video on one of the nodes
                    cluster.remove_node(second)

            summary = run_batch(
                f"{bucket}/in",
                f"{bucket}/out",
                config=config,
                on_outcome=lose_the_second_node,
                work_dir=tmp_path / "work",
            )
        finally:
            cluster.shutdown()
        assert (summary.done, summary.failed) == (6, 0), [o.error for o in seen]
        # each node held one of the two workers (one CPU each): the second node's worker
        # died, mid-video or on its next one, and that video was mined again elsewhere
        assert "its Ray worker died" in caplog.text and "trying it again" in caplog.text
        fs.invalidate_cache()
        done = sorted(k.split("/")[-2] for k in fs.glob(f"{bucket[5:]}/out/videos/*/run.json"))
        assert done == [f"v{k}" for k in range(6)]
        assert fs.exists(f"{bucket[5:]}/out/state.sqlite")
        assert not any(Path(tmp_path / "driver").iterdir())  # nothing written where it ran
        assert (
            os.environ["AWS_SECRET_ACCESS_KEY"]
            not in fs.cat_file(f"{bucket[5:]}/out/videos/v0/run.json").decode()
        )
