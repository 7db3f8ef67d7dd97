"""The checkpoint bundle: round trip, safe loading, refusals."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest
import torch

from clipminer.errors import BundleError
from clipminer.models.bundle import (
    Bundle,
    InputSpec,
    build_from_bundle,
    inference_network,
    load_bundle,
    save_bundle,
)
from clipminer.models.features import weights_id


def _bundle(kind: str = "image") -> Bundle:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    return Bundle(
        kind=kind,  # type: ignore[arg-type]
        arch="tiny",
        labels=("a", "b", "c"),
        input=InputSpec(
            size=(32, 40),
            mean=(0.4, 0.5, 0.6),
            std=(0.2, 0.2, 0.2),
            clip_len=8 if kind == "video" else None,
            frame_rate=12.5 if kind == "video" else None,
        ),
        state_dict=model.state_dict(),
        metrics={"top1": 0.9, "per_class": {"a": 1.0}},
        config={"epochs": 3, "lr": 1e-3, "layers": [1, 2]},
    )


@pytest.mark.parametrize("kind", ["image", "video"])
def test_round_trip(tmp_path: Path, kind: str) -> None:
    original = _bundle(kind)
    path = save_bundle(original, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "clipminer/1" and raw["kind"] == kind
    loaded = load_bundle(path, kind=kind)  # type: ignore[arg-type]
    assert loaded.labels == original.labels and loaded.input == original.input
    assert loaded.metrics == original.metrics and loaded.config == original.config
    assert loaded.state_dict.keys() == original.state_dict.keys()
    for key, tensor in original.state_dict.items():
        assert torch.equal(loaded.state_dict[key], tensor)
    # Conv2d(3, 4, 3): 108 weights + 4 biases; BatchNorm2d(4): 4 x 4 values + 1 counter.
    assert f"kind={kind!r}, arch='tiny', labels=3, " in repr(loaded)
    assert "tensors=7, params=129, " in repr(loaded) and "tensor(" not in repr(loaded)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_wrong_kind_is_refused(tmp_path: Path) -> None:
    path = save_bundle(_bundle("image"), tmp_path / "m.pt")
    with pytest.raises(BundleError, match="is an image model, expected a video model"):
        load_bundle(path, kind="video")


class Payload:
    """Stands for anything that only full unpickling could rebuild."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_object_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pt"
    data = _bundle().to_dict()
    data["config"] = {"hook": Payload()}
    torch.save(data, path)
    with pytest.raises(BundleError, match=r"evil\.pt: refused, it holds Python objects"):
        load_bundle(path)
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: torch.save({"weight": torch.zeros(2)}, p), "not a clipminer bundle"),
        (lambda p: torch.save([1, 2, 3], p), "holds list"),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "not a PyTorch checkpoint"),
        (
            lambda p: p.write_bytes(pickle.dumps({"format": "clipminer/1"}, protocol=2)),
            "not a PyTorch",
        ),
    ],
)
def test_non_bundles_are_refused(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "x.pt"
    content(path)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_incomplete_bundle_names_missing_keys(tmp_path: Path) -> None:
    data = _bundle().to_dict()
    del data["labels"]
    torch.save(data, tmp_path / "x.pt")
    with pytest.raises(BundleError, match=r"missing \['labels'\]"):
        load_bundle(tmp_path / "x.pt")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"nope\.pt: no such file"):
        load_bundle(tmp_path / "nope.pt")


def test_validation() -> None:
    with pytest.raises(ValueError, match="clip_len"):
        Bundle(
            kind="video",
            arch="x",
            labels=("a",),
            input=InputSpec((8, 8), (0, 0, 0), (1, 1, 1)),
            state_dict={},
        )
    with pytest.raises(ValueError, match="unique"):
        Bundle(
            kind="image",
            arch="x",
            labels=("a", "a"),
            input=InputSpec((8, 8), (0, 0, 0), (1, 1, 1)),
            state_dict={},
        )


def test_channel_order_and_value_scale_round_trip(tmp_path: Path) -> None:
    caffe = dataclasses.replace(
        _bundle("video"),
        input=InputSpec(
            (112, 112), (90.0, 98.0, 102.0), (1.0, 1.0, 1.0), clip_len=16, frame_rate=25.0,
            channels="BGR", scale=255.0,
        ),
    )  # fmt: skip
    path = save_bundle(caffe, tmp_path / "c3d.pt")
    assert torch.load(path, weights_only=True)["input"]["channels"] == "BGR"
    loaded = load_bundle(path, kind="video")
    assert (loaded.input.channels, loaded.input.scale) == ("BGR", 255.0)
    assert loaded.input == caffe.input
    spec = loaded.input.clip_spec()
    assert (spec.channels, spec.scale, spec.mean) == ("BGR", 255.0, (90.0, 98.0, 102.0))


def test_bundles_written_before_channels_and_scale_read_as_rgb_in_0_to_1(tmp_path: Path) -> None:
    data = _bundle("video").to_dict()
    del data["input"]["channels"], data["input"]["scale"]
    torch.save(data, tmp_path / "old.pt")
    loaded = load_bundle(tmp_path / "old.pt")
    assert (loaded.input.channels, loaded.input.scale) == ("RGB", 1.0)


@pytest.mark.parametrize(("field", "value"), [("channels", "GBR"), ("scale", 0.0)])
def test_bad_channels_or_scale_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        InputSpec((8, 8), (0, 0, 0), (1, 1, 1), **{field: value})  # type: ignore[arg-type]


class _WithScratch(torch.nn.Module):
    """A network with a tensor no state dict holds (a non-persistent buffer)."""

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, num_classes, 3)
        self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


def _tiny(*, num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_shared_weights_build_holds_one_copy_and_computes_the_same() -> None:
    bundle = _bundle()
    plain = build_from_bundle(bundle, {"tiny": _tiny})
    shared = build_from_bundle(bundle, {"tiny": _tiny}, share_weights=True)
    pointers = {t.data_ptr() for t in bundle.state_dict.values()}
    assert {t.data_ptr() for t in shared.state_dict().values()} == pointers
    assert not pointers & {t.data_ptr() for t in plain.state_dict().values()}
    x = torch.rand(2, 3, 9, 9)
    with torch.inference_mode():
        assert torch.equal(shared(x), plain(x))
    assert not shared.training


def test_shared_weights_build_falls_back_when_the_bundle_lacks_a_tensor() -> None:
    conv = torch.nn.Conv2d(3, 3, 3)
    state = {f"conv.{name}": tensor for name, tensor in conv.state_dict().items()}
    bundle = dataclasses.replace(_bundle(), arch="scratch", state_dict=state)
    model = build_from_bundle(bundle, {"scratch": _WithScratch}, share_weights=True)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    x = torch.rand(1, 3, 5, 5)
    with torch.inference_mode():
        assert torch.allclose(model(x), conv(x) * 2)


def test_inference_network_keeps_the_weights_id_and_drops_the_second_copy() -> None:
    bundle = _bundle()
    before = weights_id(bundle.state_dict)
    model = inference_network(bundle, {"tiny": _tiny}, torch.device("cpu"))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(
        bundle.state_dict[name].data_ptr() == tensor.data_ptr()
        for name, tensor in model.state_dict().items()
    )
    assert weights_id(bundle.state_dict) == before


def test_shared_weights_build_names_the_bundle_when_weights_do_not_fit() -> None:
    bundle = dataclasses.replace(_bundle(), source="/models/m.pt")
    with pytest.raises(BundleError, match=r"^/models/m.pt: weights do not fit tiny"):
        build_from_bundle(bundle, {"tiny": _WithScratch}, share_weights=True)


def _mapped_from(path: Path) -> list[tuple[int, int]]:
    """The address ranges of this process mapped from ``path`` (``/proc/self/maps``)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path):
            lo, hi = fields[0].split("-")
            ranges.append((int(lo, 16), int(hi, 16)))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_a_loaded_network_runs_on_the_files_pages_and_legacy_files_still_load(
    tmp_path: Path,
) -> None:
    """Weights saved channels-last (as training saves them) stay mapped from the bundle
    file: no private copy, pages shared by every process using the bundle. A file in
    torch's legacy format cannot be mapped and is read instead."""
    original = _bundle()
    conv = original.state_dict["0.weight"]
    original.state_dict["0.weight"] = conv.contiguous(memory_format=torch.channels_last)
    path = save_bundle(original, tmp_path / "m.pt")
    model = inference_network(load_bundle(path), {"tiny": _tiny}, torch.device("cpu"))
    ranges = _mapped_from(path)
    for name, tensor in model.state_dict().items():
        assert any(lo <= tensor.data_ptr() < hi for lo, hi in ranges), name
    x = torch.rand(2, 3, 9, 9)
    with torch.inference_mode():
        expected = inference_network(_bundle(), {"tiny": _tiny}, torch.device("cpu"))
        expected.load_state_dict(original.state_dict)
        assert torch.equal(model(x), expected(x))

    legacy = tmp_path / "legacy.pt"
    torch.save(original.to_dict(), legacy, _use_new_zipfile_serialization=False)
    read = load_bundle(legacy)
    assert not _mapped_from(legacy)
    assert torch.equal(read.state_dict["0.weight"], conv)
