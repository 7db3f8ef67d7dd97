"""The nightly watch list end to end: search (fake Data API), fetch (fake media site),
mine (tiny models), on generated videos, over three nights."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipminer.synth import make_long_video
from jobs import nightly

from .test_fetch_videos import MediaSite, _QuietServer
from .test_fetch_videos import _handler as media_handler
from .test_search_videos import KEY, FakeApi
from .test_search_videos import _handler as api_handler

pytest.importorskip("yt_dlp")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[FakeApi, MediaSite]]:
    """A fake Data API and a media site serving three generated 4 s videos, on 127.0.0.1."""
    api, site = FakeApi(), MediaSite()
    for seed, name in enumerate(("v1", "v2", "v3"), start=1):
        path = tmp_path / "media" / f"{name}.mp4"
        path.parent.mkdir(exist_ok=True)
        make_long_video(path, duration_seconds=4.0, size=(48, 64), fps=10, seed=seed)
        site.files[name] = path.read_bytes()
    running = []
    for state, handler in ((api, api_handler(api)), (site, media_handler(site))):
        server = _QuietServer(("127.0.0.1", 0), handler)
        state.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append(server)
    yield api, site
    site.release.set()
    for server in running:
        server.shutdown()
        server.server_close()


def _config(tmp_path: Path, models: tuple[Path, Path], api: FakeApi, site: MediaSite) -> Path:
    (tmp_path / "actions.txt").write_text("bouncing\nspinning  # watched\n")
    config = tmp_path / "nightly.toml"
    config.write_text(
        f"""[batch]
input = "in"
output_root = "out"
image_model = "{models[0]}"
video_models = ["{models[1]}"]

[findclips]
segment_on = "action"
min_seconds = 1.0
max_seconds = 4.0
device = "cpu"

[watch]
actions = "actions.txt"
candidates = "candidates.csv"
api_key_env = "CLIPMINER_TEST_YOUTUBE_KEY"

[search]
per_action = 1
order = "date"
api_url = "{api.url}"

[fetch]
url_template = "{site.template}"
max_videos = 1
retries = 0

[log]
file = "logs/nightly.log"
"""
    )
    return config


def _night(tmp_path: Path) -> dict[str, dict[str, object]]:
    night = json.loads((tmp_path / "out" / "night.json").read_text())
    return {stage["name"]: stage for stage in night["stages"]}


def test_three_nights_of_the_watch_list(
    tiny_models: tuple[Path, Path],
    servers: tuple[FakeApi, MediaSite],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, site = servers
    api.pages = {"bouncing": [["v1", "v3"]], "spinning": [["v2"]]}
    monkeypatch.setenv("CLIPMINER_TEST_YOUTUBE_KEY", KEY)
    config = _config(tmp_path, tiny_models, api, site)
    videos = tmp_path / "in"

    # Night 1: one new candidate per action; one download (the cap); it is mined.
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_OK
    stages = _night(tmp_path)
    assert list(stages) == ["search", "fetch", "mine", "dedup"]  # retrain: no [retrain]
    assert [stages[s]["status"] for s in stages] == ["ok", "ok", "ok", "ok"]
    assert "2 new candidates for 2 actions" in str(stages["search"]["detail"])
    assert "1 fetched" in str(stages["fetch"]["detail"]) and "1 left" in str(
        stages["fetch"]["detail"]
    )
    assert (videos / "bouncing" / "v1.mp4").is_file() and not (videos / "spinning").exists()
    assert "1 done" in str(stages["mine"]["detail"])
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count('<section id="night">') == 1 and "2 new candidates" in report
    log_text = (tmp_path / "logs" / "nightly.log").read_text()
    assert "search: ok" in log_text and KEY not in log_text

    # Night 2, search skipped: no API call; the next candidate is fetched and mined.
    calls = len(api.requests)
    assert nightly.main(["--config", str(config), "--skip", "search"]) == nightly.EXIT_OK
    assert len(api.requests) == calls
    stages = _night(tmp_path)
    assert stages["search"]["status"] == "skipped"
    assert (videos / "spinning" / "v2.mp4").is_file()
    assert "1 done, 0 failed, 1 already done" in str(stages["mine"]["detail"])

    # Night 3: the quota is gone and the next video is missing on the site. Both
    # failures are reported, and mining still runs over what is there.
    api.quota_after = 0
    api.pages["bouncing"] = [["v1", "v3"]]
    site.behaviour["v3"] = "404"
    (tmp_path / "candidates.csv").write_text(
        (tmp_path / "candidates.csv").read_text() + "bouncing,bouncing,v3,,,,,,\n"
    )
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_FAILED_VIDEOS
    stages = _night(tmp_path)
    assert stages["search"]["status"] == "failed"
    assert "quota exceeded" in str(stages["search"]["detail"])
    assert stages["fetch"]["status"] == "ok"  # a video gone for good is not a failed night
    assert any("v3: unavailable" in p for p in stages["fetch"]["problems"])  # type: ignore[union-attr]
    assert stages["mine"]["status"] == "ok"
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count('<section id="night">') == 1
    assert "quota exceeded" in report and "v3: unavailable" in report


def test_watch_list_configuration_errors(
    tiny_models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api, site = FakeApi(port=1), MediaSite(port=1)
    config = _config(tmp_path, tiny_models, api, site)
    text = config.read_text()
    for bad, message in (
        (text.replace("per_action = 1", "per_action = 0"), "[search]: per_action must be"),
        (text.replace("max_videos = 1", "max_video = 1"), "unknown setting max_video"),
        (text.replace('candidates = "candidates.csv"', ""), "missing setting candidates"),
        (text + '\n[night]\nstages = ["fetch", "sleep"]\n', "stages must be a list of"),
    ):
        config.write_text(bad)
        assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG, message
        assert message in capsys.readouterr().err
    config.write_text(text)
    assert nightly.load_stages(config, ["search"]) == ("fetch", "retrain", "mine", "dedup")
