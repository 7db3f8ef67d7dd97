"""Videos, models and OUT in object storage: a real S3-protocol server (moto's) on
127.0.0.1, started here, with buckets made by each test; a proxy that answers 503s and
drops connections; an HTTP server with ranged reads. No traffic leaves 127.0.0.1."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipminer import store
from clipminer.batch import run_batch
from clipminer.cli import app
from clipminer.curate import catalog

from .helpers import TINY_FLAGS, batch_config, make_videos

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from clipminer.testing import Faults, FaultyProxy, FileServer, LoopbackS3

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def s3():
    with LoopbackS3() as server:
        yield server


@pytest.fixture
def bucket(s3: LoopbackS3) -> str:
    return s3.bucket(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory):
    """One model cache for the module (each test fetching the models again only costs time)."""
    cache = tmp_path_factory.mktemp("cache")
    saved = os.environ.get(store.MODEL_CACHE_ENV)
    os.environ[store.MODEL_CACHE_ENV] = str(cache)
    yield cache
    if saved is None:
        os.environ.pop(store.MODEL_CACHE_ENV, None)
    else:
        os.environ[store.MODEL_CACHE_ENV] = saved


@pytest.fixture(scope="module")
def remote_models(s3: LoopbackS3, tiny_models) -> tuple[str, str]:
    """The tiny bundles in a bucket of their own, uploaded once: (image URL, video URL)."""
    bucket = s3.bucket(f"models-{uuid.uuid4().hex[:12]}")
    _put(tiny_models[0], f"{bucket}/image.pt")
    _put(tiny_models[1], f"{bucket}/video.pt")
    return f"{bucket}/image.pt", f"{bucket}/video.pt"


def _fs():
    import s3fs

    return s3fs.S3FileSystem()


def _put(local: Path, url: str) -> None:
    fs = _fs()
    if local.is_dir():
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.put_file(str(file), f"{url.removeprefix('s3://')}/{file.relative_to(local)}")
    else:
        fs.put_file(str(local), url.removeprefix("s3://"))


def _stage(
    remote_models: tuple[str, str], bucket: str, tmp_path: Path, count: int = 2
) -> tuple[Path, str, str]:
    """Videos in tmp_path/in and under bucket/in; with the models' URLs."""
    folder = tmp_path / "in"
    make_videos(folder, count)
    _put(folder, f"{bucket}/in")
    return folder, *remote_models


def _rows(text: str) -> list[tuple[str, ...]]:
    """segments.csv rows without the video column (a path here, a URL there)."""
    return [tuple(row[1:]) for row in list(csv.reader(text.splitlines()))[1:]]


def _half_done(fs, out: str) -> set[str]:
    """The video folders under ``out`` in the bucket that have objects but no run.json."""
    keys = [k for k in fs.find(f"{out[5:]}/videos") if "/videos/" in k]
    folders = {k.split("/videos/")[1].split("/")[0] for k in keys}
    return folders - {k.split("/videos/")[1].split("/")[0] for k in keys if k.endswith("/run.json")}


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


# -- URLs --------------------------------------------------------------------------------------


def test_urls_are_told_from_paths_and_shown_without_secrets() -> None:
    assert store.is_url("s3://b/k.mp4") and store.is_url("https://h/x")
    assert not store.is_url("videos/x.mp4") and not store.is_url("file:///tmp/x.mp4")
    assert store.local_or_url("file:///tmp/x.mp4") == Path("/tmp/x.mp4")
    assert store.names_url(Path("s3://b/out")) and not store.names_url(Path("out/s3"))
    shown = store.redact(
        "https://ann:hunter2@host/v.mp4?X-Amz-Signature=abc&X-Amz-Credential=def&part=2"
    )
    assert "hunter2" not in shown and "abc" not in shown and "def" not in shown
    assert "ann" in shown and "part=2" in shown
    assert store.redact("s3://bucket/key.mp4") == "s3://bucket/key.mp4"
    video = store.RemoteVideo("https://h/a/clip one.mkv?token=x")
    assert (video.name, video.stem, video.suffix) == ("clip one.mkv", "clip one", ".mkv")
    assert str(video).endswith("token=***") and "x" not in repr(video).split("token=")[1]
    # in a bucket key, ? and # are part of the name, and there is no query to redact
    key = store.RemoteVideo("s3://b/what?token=x#1.mp4")
    assert (key.name, str(key)) == ("what?token=x#1.mp4", "s3://b/what?token=x#1.mp4")
    assert store.redact("s3://id:secret@b/k.mp4") == "s3://***@b/k.mp4"
    assert "TOKEN" not in store.redact("https://TOKEN@host/v.mp4")
    assert store.scrub("failed: url='https://h/v?X-Amz-Signature=abc' (403)").count("abc") == 0


# -- find-clips ----------------------------------------------------------------------------------


def test_find_clips_from_and_to_a_bucket_matches_a_local_run(
    tiny_models, remote_models, model_cache: Path, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    folder, image, video = _stage(remote_models, bucket, tmp_path)
    urls = [f"{bucket}/in/v0.mp4", f"{bucket}/in/v1.mp4"]
    code, output = _cli(
        "find-clips", *urls, "--out", f"{bucket}/out", "--image-model", image,
        "--video-model", video, *TINY_FLAGS,
    )  # fmt: skip
    assert code == 0, output
    code, output = _cli(
        "find-clips", folder / "v0.mp4", folder / "v1.mp4", "--out", tmp_path / "local",
        "--image-model", tiny_models[0], "--video-model", tiny_models[1], *TINY_FLAGS,
    )  # fmt: skip
    assert code == 0, output
    fs = _fs()
    for name in ("v0", "v1"):
        remote = fs.cat_file(f"{bucket[5:]}/out/videos/{name}/segments.csv").decode()
        local = (tmp_path / "local" / "videos" / name / "segments.csv").read_text()
        assert _rows(remote) == _rows(local) and _rows(local)
        assert remote.splitlines()[1].startswith(f"{bucket}/in/{name}.mp4,")
        clips = [row[7] for row in _rows(remote)]
        assert clips and all(fs.exists(f"{bucket[5:]}/out/{clip}") for clip in clips)
    assert fs.exists(f"{bucket[5:]}/out/kinetics.csv")
    record = fs.cat_file(f"{bucket[5:]}/out/videos/v0/run.json").decode()
    assert image in record and os.environ["AWS_SECRET_ACCESS_KEY"] not in record
    # the models were fetched into the cache, named by their content
    import hashlib

    cached = {p.name for p in (model_cache / "models").glob("*.pt")}
    for model in tiny_models:
        assert f"{hashlib.sha256(model.read_bytes()).hexdigest()}.pt" in cached


def test_a_folder_is_uploaded_with_run_json_last_and_stale_objects_go(
    s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "v"
    (folder / "clips" / "a").mkdir(parents=True)
    (folder / "clips" / "a" / "one.mp4").write_bytes(b"x" * 100)
    (folder / "segments.csv").write_text("video\n")
    (folder / "run.json").write_text("{}")
    target = f"{bucket}/out/videos/v"
    _put(tmp_path / "v", target)  # an earlier result, with a clip the new one lacks
    _fs().pipe_file(f"{target[5:]}/clips/a/old.mp4", b"old")
    with s3.through() as proxy:
        store.upload_folder(folder, target, marker="run.json")
    changes = [(m, p) for m, p in proxy.traffic.answered if m in ("PUT", "DELETE", "POST")]
    assert changes[0][0] == "DELETE" and changes[0][1].endswith("/v/run.json")
    assert changes[-1] == ("PUT", f"/{bucket[5:]}/out/videos/v/run.json")
    found = sorted(_fs().find(f"{target[5:]}"))
    assert [p.rsplit("/v/", 1)[1] for p in found] == ["clips/a/one.mp4", "run.json", "segments.csv"]


def test_a_model_is_fetched_once_and_again_when_it_changes(
    tiny_models, s3: LoopbackS3, bucket: str
) -> None:
    url = f"{bucket}/models/m.pt"
    _put(tiny_models[0], url)
    first = store.local_model(url)
    stamp = first.stat().st_mtime_ns
    assert store.local_model(url) == first and first.stat().st_mtime_ns == stamp
    _put(tiny_models[1], url)
    second = store.local_model(url)
    assert second != first and second.read_bytes() == tiny_models[1].read_bytes()
    from clipminer.models.bundle import load_bundle

    assert load_bundle(url, kind="video").source == url


def test_http_inputs_are_streamed_and_their_secrets_never_recorded(
    tiny_models, tmp_path: Path
) -> None:
    folder = tmp_path / "served"
    make_videos(folder, 1)
    with FileServer(folder) as server:
        host = server.url.removeprefix("http://")
        url = f"http://ann:hunter2@{host}/v0.mp4?X-Amz-Signature=topsecret&part=1"
        code, output = _cli(
            "find-clips", url, "--out", tmp_path / "out", "--image-model", tiny_models[0],
            "--video-model", tiny_models[1], *TINY_FLAGS,
        )  # fmt: skip
    assert code == 0, output
    code, local_output = _cli(
        "find-clips", folder / "v0.mp4", "--out", tmp_path / "local",
        "--image-model", tiny_models[0], "--video-model", tiny_models[1], *TINY_FLAGS,
    )  # fmt: skip
    assert code == 0, local_output
    out = tmp_path / "out" / "videos" / "v0"
    assert _rows((out / "segments.csv").read_text()) == _rows(
        (tmp_path / "local" / "videos" / "v0" / "segments.csv").read_text()
    )
    written = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    for secret in (b"hunter2", b"topsecret"):
        assert secret not in output.encode() and not any(secret in data for data in written)


# -- batch -----------------------------------------------------------------------------------------


def test_batch_from_and_to_a_bucket_matches_local_and_resumes_from_the_bucket(
    tiny_models, remote_models, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    folder, image, video = _stage(remote_models, bucket, tmp_path, count=3)
    _fs().pipe_file(f"{bucket[5:]}/in/notes.txt", b"not a video")
    config = batch_config((image, video))
    work = tmp_path / "work"
    summary = run_batch(f"{bucket}/in", f"{bucket}/out", config=config, work_dir=work)
    assert (summary.done, summary.failed, summary.skipped) == (3, 0, 1)
    local = run_batch(folder, tmp_path / "local", config=batch_config(tiny_models))
    assert local.done == 3
    fs = _fs()
    for k in range(3):
        remote = fs.cat_file(f"{bucket[5:]}/out/videos/v{k}/segments.csv").decode()
        mine = (tmp_path / "local" / "videos" / f"v{k}" / "segments.csv").read_text()
        assert _rows(remote) == _rows(mine)
    for name in ("state.sqlite", "summary.csv", "kinetics.csv", "report.html"):
        assert fs.exists(f"{bucket[5:]}/out/{name}"), name
    assert (
        fs.cat_file(f"{bucket[5:]}/out/kinetics.csv")
        == (tmp_path / "local" / "kinetics.csv").read_bytes()
    )
    report = fs.cat_file(f"{bucket[5:]}/out/report.html").decode()
    assert "videos/v0/thumbs/" in report  # thumbnails made by the worker, uploaded with it
    # again from this machine, then from another one (no work folder): nothing to do
    again = run_batch(f"{bucket}/in", f"{bucket}/out", config=config, work_dir=work)
    elsewhere = run_batch(
        f"{bucket}/in", f"{bucket}/out", config=config, work_dir=tmp_path / "elsewhere"
    )
    assert again.already_done == elsewhere.already_done == 3
    assert again.done == elsewhere.done == 0
    # a folder whose marker is gone is not done: only that video is mined again
    fs.rm_file(f"{bucket[5:]}/out/videos/v1/run.json")
    third = run_batch(f"{bucket}/in", f"{bucket}/out", config=config, work_dir=work)
    assert (third.done, third.already_done) == (1, 2)
    assert [o.path for o in third.outcomes] == [f"{bucket}/in/v1.mp4"]


def test_batch_killed_mid_upload_leaves_nothing_counted_as_done(
    remote_models, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    _folder, image, video = _stage(remote_models, bucket, tmp_path, count=3)
    fs = _fs()
    out = f"{bucket}/out"
    with FaultyProxy(s3.endpoint, Faults(put_delay_seconds=0.4)) as proxy:
        env = {**os.environ, **s3.env(proxy.endpoint), "PYTHONPATH": str(ROOT)}
        command = [
            sys.executable, "-m", "clipminer", "batch", f"{bucket}/in", "--out", out,
            "--image-model", image, "--video-model", video, *TINY_FLAGS,
        ]  # fmt: skip
        run = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        half: set[str] = set()
        while time.monotonic() < deadline and run.poll() is None and not half:
            fs.invalidate_cache()
            half = _half_done(fs, out)
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    assert half, "the run finished before a folder was half uploaded"
    fs.invalidate_cache()
    assert _half_done(fs, out) == half
    # a copy of the bucket's OUT has the half folder, and no reader counts it
    copy = tmp_path / "copy"
    fs.get(f"{out[5:]}/videos", str(copy / "videos"), recursive=True)
    listed = {p.name for p in catalog.video_folders(copy)}
    assert not (listed & half)
    # the next run (healthy store) mines what is not done, the half folder included
    summary = run_batch(
        f"{bucket}/in", out, config=batch_config((image, video)), work_dir=tmp_path / "w2"
    )
    assert summary.failed == 0 and summary.done + summary.already_done == 3
    assert half <= {Path(o.output).name for o in summary.outcomes}
    fs.invalidate_cache()
    assert len(fs.glob(f"{out[5:]}/videos/*/run.json")) == 3


# -- a store that misbehaves --------------------------------------------------------------------


def test_503s_and_dropped_connections_are_retried(
    remote_models, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    _folder, image, video = _stage(remote_models, bucket, tmp_path, count=1)
    clean = f"{bucket}/clean"
    code, output = _cli(
        "find-clips", f"{bucket}/in/v0.mp4", "--out", clean, "--image-model", image,
        "--video-model", video, *TINY_FLAGS,
    )  # fmt: skip
    assert code == 0, output
    with s3.through(Faults(slow_down_every=4, reset_every=7)) as proxy:
        code, output = _cli(
            "find-clips", f"{bucket}/in/v0.mp4", "--out", f"{bucket}/faulty",
            "--image-model", image, "--video-model", video, *TINY_FLAGS,
        )  # fmt: skip
    assert code == 0, output
    assert proxy.traffic.slowed > 3 and proxy.traffic.reset > 1
    fs = _fs()
    assert _rows(fs.cat_file(f"{bucket[5:]}/faulty/videos/v0/segments.csv").decode()) == _rows(
        fs.cat_file(f"{bucket[5:]}/clean/videos/v0/segments.csv").decode()
    )


def test_a_store_that_keeps_failing_is_one_bounded_line(
    remote_models,
    s3: LoopbackS3,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _folder, image, _video = _stage(remote_models, bucket, tmp_path, count=1)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with s3.through(Faults(fail_all=True)) as proxy:
        started = time.monotonic()
        code, output = _cli(
            "find-clips", f"{bucket}/in/v0.mp4", "--out", f"{bucket}/o",
            "--image-model", image, *TINY_FLAGS,
        )  # fmt: skip
    assert code != 0
    assert time.monotonic() - started < 90
    assert image in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    # bounded: AWS_MAX_ATTEMPTS tries of the one request that failed, no endless loop
    assert 2 <= proxy.traffic.slowed == proxy.traffic.requests <= 6


def test_nightly_mines_a_bucket_into_a_bucket(
    remote_models, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    from jobs import nightly

    _folder, image, video = _stage(remote_models, bucket, tmp_path, count=2)
    config = tmp_path / "nightly.toml"
    config.write_text(
        f"""[batch]
input = "{bucket}/in"
output_root = "{bucket}/out"
image_model = "{image}"
video_models = ["{video}"]

[findclips]
segment_on = "action"
min_seconds = 1.0
max_seconds = 4.0
device = "cpu"
"""
    )
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK
    fs = _fs()
    assert len(fs.glob(f"{bucket[5:]}/out/videos/*/run.json")) == 2
    assert fs.exists(f"{bucket[5:]}/out/report.html")
    fs.invalidate_cache()
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK  # nothing to do
    # fetch-videos writes to a folder here: a [watch] without one is refused up front
    config.write_text(config.read_text() + '\n[watch]\ncandidates = "c.csv"\n')
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG


def test_a_store_that_refuses_uploads_stops_the_batch_and_loses_no_video(
    remote_models,
    s3: LoopbackS3,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clipminer.errors import OutputDiskError

    _folder, image, video = _stage(remote_models, bucket, tmp_path, count=2)
    config = batch_config((image, video))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with s3.through(Faults(fail_puts=True)), pytest.raises(OutputDiskError, match="stay queued"):
        run_batch(f"{bucket}/in", f"{bucket}/out", config=config, work_dir=tmp_path / "w")
    summary = run_batch(f"{bucket}/in", f"{bucket}/out", config=config, work_dir=tmp_path / "w")
    assert (summary.done, summary.failed, summary.already_done) == (2, 0, 0)


def test_http_reads_are_retried_and_a_failing_server_leaks_no_secret(
    tiny_models, tmp_path: Path
) -> None:
    folder = tmp_path / "served"
    make_videos(folder, 1)
    flags = ["--image-model", tiny_models[0], "--video-model", tiny_models[1], *TINY_FLAGS]
    with FileServer(folder) as server:
        with FaultyProxy(server.url, Faults(reset_every=3)) as flaky:
            url = f"{flaky.url}/v0.mp4?X-Amz-Signature=topsecret"
            code, output = _cli("find-clips", url, "--out", tmp_path / "out", *flags)
        assert code == 0, output
        assert flaky.traffic.reset >= 1
        with FaultyProxy(server.url, Faults(fail_all=True)) as down:
            url = f"{down.url}/v0.mp4?X-Amz-Signature=topsecret"
            code, output = _cli("find-clips", url, "--out", tmp_path / "down", *flags)
    assert code == 1 and "v0.mp4" in output
    assert "topsecret" not in output and "Traceback" not in output
    assert not (tmp_path / "down" / "videos").exists() or not any(
        (tmp_path / "down" / "videos").iterdir()
    )


def test_a_bucket_input_that_holds_out_never_mines_its_clips(
    remote_models, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    from clipminer.errors import UsageError

    _folder, image, video = _stage(remote_models, bucket, tmp_path, count=2)
    config = batch_config((image, video))
    work = tmp_path / "w"
    first = run_batch(f"{bucket}/in", f"{bucket}/in/mined", config=config, work_dir=work)
    again = run_batch(f"{bucket}/in", f"{bucket}/in/mined", config=config, work_dir=work)
    assert (first.done, again.done, again.already_done, again.skipped) == (2, 0, 2, 0)
    with pytest.raises(UsageError, match="inside the output"):
        run_batch(f"{bucket}/in/mined/videos", f"{bucket}/in/mined", config=config, work_dir=work)


def test_odd_object_names_and_bad_objects_in_a_bucket(
    remote_models, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    names = ["clip one.mp4", "ü é/$x [1].mkv", "a#b.mp4", "what?.mp4", "..mp4", "state.sqlite.mp4"]
    make_videos(tmp_path / "odd", names=names, seconds=4)
    (tmp_path / "odd" / "empty.mp4").write_bytes(b"")
    (tmp_path / "odd" / "text.mp4").write_text("not a video\n")
    _put(tmp_path / "odd", f"{bucket}/odd")
    config = batch_config(remote_models)
    work = tmp_path / "w"
    summary = run_batch(f"{bucket}/odd", f"{bucket}/out", config=config, work_dir=work)
    # ..mp4 is a hidden name, left out as in a local folder
    assert (summary.done, summary.failed) == (5, 2), [o.error for o in summary.outcomes]
    errors = sorted(o.error for o in summary.outcomes if not o.ok)
    assert errors[0].startswith(f"{bucket}/odd/empty.mp4: ") and "\n" not in errors[0]
    assert errors[1].startswith(f"{bucket}/odd/text.mp4: ") and "\n" not in errors[1]
    folders = {Path(o.output).name for o in summary.outcomes if o.ok}
    assert len(folders) == 5 and "clip one" in folders and "a#b" in folders
    fs = _fs()
    for name in folders:
        assert fs.exists(f"{bucket[5:]}/out/videos/{name}/run.json"), name
    again = run_batch(f"{bucket}/odd", f"{bucket}/out", config=config, work_dir=work)
    assert (again.done, again.already_done, again.skipped) == (0, 5, 2)


def test_probe_reads_a_video_in_a_bucket(
    remote_models, s3: LoopbackS3, bucket: str, tmp_path: Path
) -> None:
    _stage(remote_models, bucket, tmp_path, count=1)
    code, output = _cli("probe", "--json", f"{bucket}/in/v0.mp4", tmp_path / "in" / "v0.mp4")
    assert code == 0, output
    remote, local = (json.loads(line) for line in output.strip().splitlines())
    assert remote["path"] == f"{bucket}/in/v0.mp4"
    assert {k: v for k, v in remote.items() if k != "path"} == {
        k: v for k, v in local.items() if k != "path"
    }
    code, output = _cli("probe", f"{bucket}/in/missing.mp4")
    assert code == 1 and f"{bucket}/in/missing.mp4" in output and "Traceback" not in output
