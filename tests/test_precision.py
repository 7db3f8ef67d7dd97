"""Low-precision inference (clipminer.precision) on tiny models trained on synthetic scenes.

Untrained models have near-uniform logits, so agreement tests use a ResNet-18 and a
small 3D CNN trained for a few steps on frames and clips of four actions that a single
frame tells apart (the motion-only pair is left out).
"""

from __future__ import annotations

import copy
import ctypes
import gc
import io
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import Tensor, nn

from clipminer import precision, synth
from clipminer.errors import BundleError, UsageError
from clipminer.memory import libc_function
from clipminer.models.video import Small3D

CPU = torch.device("cpu")
LABELS = ("bouncing", "spinning", "pulsing", "background")
SIZE = 32
CLIP_LEN = 8
INT8_BACKENDS = [
    "torch-fx",
    pytest.param(
        "openvino",
        marks=pytest.mark.skipif(
            not precision.openvino_available(), reason="openvino and nncf are not installed"
        ),
    ),
]
native_bf16 = pytest.mark.skipif(
    "bf16" not in precision.supported(CPU), reason="this CPU has no native bf16"
)


def _normalise(pixels: np.ndarray) -> Tensor:
    """uint8 …×H×W×3 to float, channels first, roughly zero mean."""
    x = torch.from_numpy(pixels).float().div(255).sub(0.45).div(0.25)
    return x.movedim(-1, -3)


def _images(first: int, count: int) -> tuple[Tensor, Tensor]:
    """``count`` frames per label (scene indices from ``first``): N×3×H×W and labels."""
    frames, targets = [], []
    for k, label in enumerate(LABELS):
        for i in range(first, first + count):
            item = synth.scene(label, seed=0, index=i, size=(SIZE, SIZE))
            frames.append(item.render(0.37 * i))
            targets.append(k)
    return _normalise(np.stack(frames)), torch.tensor(targets)


def _clips(first: int, count: int) -> tuple[Tensor, Tensor]:
    """``count`` clips per label: N×3×T×H×W and labels."""
    clips, targets = [], []
    for k, label in enumerate(LABELS):
        for i in range(first, first + count):
            item = synth.scene(label, seed=0, index=i, size=(SIZE, SIZE))
            frames = np.stack([item.render(0.1 * i + t / 12.5) for t in range(CLIP_LEN)])
            clips.append(_normalise(frames).movedim(0, 1))
            targets.append(k)
    return torch.stack(clips), torch.tensor(targets)


def _train(model: nn.Module, inputs: Tensor, targets: Tensor, steps: int) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(inputs), (24,))
        loss = nn.functional.cross_entropy(model(inputs[pick]), targets[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


class Tiny:
    """A trained model with calibration and held-out batches of its own inputs."""

    def __init__(self, model: nn.Module, train: Tensor, held_out: Tensor) -> None:
        self.model = model
        self.example = train[:4]
        self.calibration = list(train.split(8))[:4]
        self.held_out = list(held_out.split(8))


@pytest.fixture(scope="module")
def tiny_image() -> Tiny:
    torch.manual_seed(0)
    inputs, targets = _images(0, 24)
    model = _train(tvm.resnet18(num_classes=len(LABELS)), inputs, targets, steps=40)
    return Tiny(model, inputs, _images(100, 6)[0])


@pytest.fixture(scope="module")
def tiny_video() -> Tiny:
    torch.manual_seed(0)
    inputs, targets = _clips(0, 8)
    model = _train(Small3D(num_classes=len(LABELS), width=8), inputs, targets, steps=30)
    return Tiny(model, inputs, _clips(100, 4)[0])


@pytest.fixture(params=["image", "video"])
def tiny(request: pytest.FixtureRequest) -> Tiny:
    return request.getfixturevalue(f"tiny_{request.param}")


def _top1(model: Callable[[Tensor], Tensor], batches: list[Tensor]) -> Tensor:
    with torch.inference_mode():
        return torch.cat([model(b).argmax(1) for b in batches])


# -- what is supported, and refusals --------------------------------------------------------


def test_check_precision_names_allowed_values() -> None:
    assert precision.check_precision("int8") == "int8"
    with pytest.raises(UsageError, match=r"auto, fp32, bf16, int8.*'fp16'"):
        precision.check_precision("fp16")


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"avx2", "fma"}, False),
        ({"avx512f", "avx512_vnni"}, False),
        ({"avx512f", "avx512_bf16"}, True),
        ({"amx_bf16", "amx_int8"}, True),
    ],
)
def test_native_bf16_from_cpu_flags(flags: set[str], native: bool) -> None:
    assert precision.cpu_has_native_bf16(frozenset(flags)) is native


def test_supported_on_cpu_starts_with_fp32() -> None:
    modes = precision.supported(CPU)
    assert modes[0] == "fp32"
    assert set(modes) <= {"fp32", "bf16", "int8"}
    assert ("bf16" in modes) == precision.cpu_has_native_bf16()


def test_unsupported_mode_names_mode_and_supported(
    tiny_image: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "supported", lambda device: ["fp32"])
    with pytest.raises(UsageError, match=r"--precision int8 is not supported.*supported: fp32"):
        precision.prepare(tiny_image.model, "int8", device=CPU, example=tiny_image.example)


def test_bf16_without_native_support_is_refused(tiny_image: Tiny) -> None:
    if precision.cpu_has_native_bf16():
        pytest.skip("this CPU has native bf16")
    with pytest.raises(UsageError, match=r"bf16 is not supported.*AVX512_BF16"):
        precision.prepare(tiny_image.model, "bf16", device=CPU)


def test_prepare_refuses_auto_and_unknown(tiny_image: Tiny) -> None:
    with pytest.raises(UsageError, match="choose"):
        precision.prepare(tiny_image.model, "auto", device=CPU)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="'int4'"):
        precision.prepare(tiny_image.model, "int4", device=CPU)  # type: ignore[arg-type]


def test_int8_needs_example_and_calibration(tiny_image: Tiny) -> None:
    with pytest.raises(UsageError, match="example"):
        precision.prepare(tiny_image.model, "int8", device=CPU, calibration=[tiny_image.example])
    with pytest.raises(UsageError, match="calibration"):
        precision.prepare(tiny_image.model, "int8", device=CPU, example=tiny_image.example)


# -- the prepared models --------------------------------------------------------------------


def test_fp32_runs_the_model_itself(tiny: Tiny) -> None:
    prepared = precision.prepare(tiny.model, "fp32", device=CPU)
    logits = prepared(tiny.example)
    assert (prepared.precision, prepared.backend) == ("fp32", "torch")
    assert logits.dtype == torch.float32
    assert torch.equal(logits, tiny.model(tiny.example).detach())


@pytest.mark.parametrize("backend", INT8_BACKENDS)
def test_int8_agrees_with_fp32(tiny: Tiny, backend: precision.Int8Backend) -> None:
    prepared = precision.prepare(
        tiny.model,
        "int8",
        device=CPU,
        example=tiny.example,
        calibration=tiny.calibration,
        int8_backend=backend,
    )
    assert (prepared.precision, prepared.backend) == ("int8", backend)
    logits = prepared(tiny.held_out[0][:3])  # a batch size it was not traced with
    assert logits.dtype == torch.float32
    assert logits.shape == (3, len(LABELS))
    reference = precision.prepare(tiny.model, "fp32", device=CPU)
    assert precision.agreement(reference, prepared, tiny.held_out) >= 0.9


def _bf16(tiny: Tiny, *, emulated: bool) -> None:
    prepared = precision.prepare(tiny.model, "bf16", device=CPU, allow_emulated=emulated)
    assert (prepared.precision, prepared.backend) == ("bf16", "torch")
    logits = prepared(tiny.example)
    assert logits.dtype == torch.float32
    assert logits.shape == (len(tiny.example), len(LABELS))
    assert next(tiny.model.parameters()).dtype == torch.float32  # the original is untouched
    reference = precision.prepare(tiny.model, "fp32", device=CPU)
    assert precision.agreement(reference, prepared, tiny.held_out) >= 0.9


@native_bf16
def test_bf16_agrees_with_fp32(tiny: Tiny) -> None:
    _bf16(tiny, emulated=False)


def test_bf16_emulated_agrees_with_fp32(tiny_image: Tiny) -> None:
    """The bf16 code path, run emulated where the CPU lacks bf16 (tiny model: fast)."""
    _bf16(tiny_image, emulated=True)


def test_trained_models_are_confident(tiny: Tiny) -> None:
    """The agreement tests mean something only if top-1 is not a coin toss."""
    probs = torch.softmax(tiny.model(torch.cat(tiny.held_out)).detach(), 1)
    assert probs.max(1).values.median() > 0.6


# -- agreement and auto ---------------------------------------------------------------------


def _fixed(logits: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda batch: logits[: len(batch)]


def test_agreement_counts_top1_matches() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 3.0]])
    assert precision.agreement(_fixed(a), _fixed(b), [torch.zeros(4, 1)]) == 0.75
    with pytest.raises(UsageError, match="held-out"):
        precision.agreement(_fixed(a), _fixed(b), [])


class Slow(nn.Module):
    """``inner`` with a fixed delay per call, so that a stand-in for it is surely faster."""

    def __init__(self, inner: nn.Module, seconds: float = 0.1) -> None:
        super().__init__()
        self.inner, self.seconds = inner, seconds

    def forward(self, x: Tensor) -> Tensor:
        time.sleep(self.seconds)
        return self.inner(x)


def _stand_in(run: Callable[[Tensor], Tensor]) -> Callable[..., precision.PreparedModel]:
    """A prepare() whose int8 is ``run``; other modes go to the real prepare()."""

    def prepare_fn(model: nn.Module, mode: str, **kwargs: Any) -> precision.PreparedModel:
        if mode == "int8":
            return precision.PreparedModel(run, "int8", "torch-fx", CPU)
        return precision.prepare(model, mode, **kwargs)  # type: ignore[arg-type]

    return prepare_fn


def _choose(tiny: Tiny, run: Callable[[Tensor], Tensor]) -> precision.PreparedModel:
    return precision.choose(
        Slow(tiny.model),
        device=CPU,
        example=tiny.example,
        calibration=tiny.calibration,
        held_out=tiny.held_out,
        modes=["fp32", "int8"],
        prepare_fn=_stand_in(run),
        repeats=2,
    )


def test_choose_takes_a_faster_mode_that_agrees(tiny_image: Tiny) -> None:
    chosen = _choose(tiny_image, tiny_image.model)
    assert chosen.precision == "int8"
    assert chosen.agreement == 1.0
    assert chosen.items_per_second is not None


def test_choose_falls_back_to_fp32_when_the_guard_fails(
    tiny_image: Tiny, caplog: pytest.LogCaptureFixture
) -> None:
    def disagrees(batch: Tensor) -> Tensor:
        return tiny_image.model(batch).roll(1, dims=1)  # every top-1 moves to another class

    with caplog.at_level("INFO", logger="clipminer.precision"):
        chosen = _choose(tiny_image, disagrees)
    assert chosen.precision == "fp32"
    assert "fails the guard" in caplog.text
    assert "chose fp32" in caplog.text


def test_choose_skips_int8_without_calibration(tiny_image: Tiny) -> None:
    chosen = precision.choose(
        tiny_image.model,
        device=CPU,
        example=tiny_image.example,
        calibration=None,
        held_out=tiny_image.held_out,
        modes=["fp32", "int8"],
        repeats=1,
    )
    assert chosen.precision == "fp32"


def test_choose_needs_held_out_inputs(tiny_image: Tiny) -> None:
    with pytest.raises(UsageError, match="held-out"):
        precision.choose(
            tiny_image.model, device=CPU, example=tiny_image.example, calibration=None, held_out=[]
        )


def test_resolve_auto_and_explicit(tiny_image: Tiny) -> None:
    auto = precision.resolve(
        tiny_image.model,
        "auto",
        device=CPU,
        example=tiny_image.example,
        calibration=tiny_image.calibration,
        held_out=tiny_image.held_out,
    )
    assert auto.precision in precision.supported(CPU)
    assert auto.agreement is not None and auto.agreement >= 0.99
    fp32 = precision.resolve(tiny_image.model, "fp32", device=CPU, example=tiny_image.example)
    assert fp32.precision == "fp32"


# -- saving ---------------------------------------------------------------------------------


def _round_trip(state: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    torch.save({"format": "clipminer/1", "precision": state}, buffer)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own TypedStorage notice for qtensors
        return torch.load(buffer, weights_only=True)["precision"]


@pytest.mark.parametrize("backend", INT8_BACKENDS)
def test_int8_state_loads_weights_only_and_restores(
    tiny: Tiny, backend: precision.Int8Backend
) -> None:
    prepared = precision.prepare(
        tiny.model,
        "int8",
        device=CPU,
        example=tiny.example,
        calibration=tiny.calibration,
        int8_backend=backend,
    )
    state = _round_trip(prepared.state())
    # As after loading a bundle: a new instance of the fp32 model.
    restored = precision.restore(copy.deepcopy(tiny.model), state, device=CPU)
    assert (restored.precision, restored.backend) == ("int8", backend)
    batch = torch.cat(tiny.held_out)
    assert torch.equal(restored(batch), prepared(batch))


def test_fp32_state_names_the_mode_only(tiny_image: Tiny) -> None:
    state = _round_trip(precision.prepare(tiny_image.model, "fp32", device=CPU).state())
    assert set(state) == {"format", "precision", "backend"}
    assert precision.restore(tiny_image.model, state, device=CPU).precision == "fp32"


def test_restore_refuses_malformed_states(tiny_image: Tiny) -> None:
    with pytest.raises(BundleError, match="not a clipminer precision state"):
        precision.restore(tiny_image.model, {"format": "x"}, device=CPU)
    base = {"format": precision.STATE_FORMAT, "precision": "int8"}
    with pytest.raises(BundleError, match="unknown int8 backend"):
        precision.restore(
            tiny_image.model, {**base, "backend": "tflite", "input_shape": [3]}, device=CPU
        )
    with pytest.raises(BundleError, match="malformed"):
        precision.restore(tiny_image.model, {**base, "backend": "torch-fx"}, device=CPU)


def test_restore_openvino_state_without_openvino(
    tiny_image: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "openvino_available", lambda: False)
    state = {
        "format": precision.STATE_FORMAT,
        "precision": "int8",
        "backend": "openvino",
        "input_shape": [3, SIZE, SIZE],
    }
    with pytest.raises(UsageError, match="pip install openvino nncf"):
        precision.restore(tiny_image.model, state, device=CPU)


# -- auto and its run-time guard -------------------------------------------------------------


class _BundleStub:
    """What :func:`precision.for_bundle` reads of a bundle: no stored precision."""

    precision = None
    source = "stub.pt"


class _DisagreesInBf16(nn.Module):
    """A classifier whose bf16 copy names another class for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(x)
        return logits.roll(1, dims=1) if x.dtype == torch.bfloat16 else logits


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU says it has AVX512_BF16 (bf16 then runs emulated, slowly, where it has not)."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))


@pytest.mark.parametrize(
    ("flags", "picked"),
    [({"avx2", "fma"}, None), ({"avx512f", "avx512_vnni"}, None), ({"amx_bf16"}, "bf16")],
)
def test_auto_picks_bf16_only_where_the_cpu_flags_allow(
    flags: set[str], picked: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    model = _DisagreesInBf16().eval()
    run = precision.for_bundle(model, _BundleStub(), "auto", device=CPU)  # type: ignore[arg-type]
    if picked is None:
        assert isinstance(run, precision.PreparedModel) and run.precision == "fp32"
        assert precision.report(run)["precision"] == "fp32"
    else:
        assert isinstance(run, precision.GuardedModel)
        assert (run.candidate.precision, run.state) == (picked, "checking")


def _feed(run: precision.Runner, count: int, batch: int = 8) -> list[Tensor]:
    torch.manual_seed(0)
    return [run(torch.randn(batch, 4)) for _ in range(count // batch)]


def test_the_guard_falls_back_to_fp32_when_bf16_disagrees(
    native_bf16: None, caplog: pytest.LogCaptureFixture
) -> None:
    model = _DisagreesInBf16().eval()
    run = precision.for_bundle(model, _BundleStub(), "auto", device=CPU, guard_items=64)  # type: ignore[arg-type]
    assert isinstance(run, precision.GuardedModel) and run.precision == "bf16"
    with caplog.at_level("WARNING", logger="clipminer.precision"):
        outputs = _feed(run, 64)
    # it gave up on bf16 as soon as the first batch made 0.98 of 64 out of reach
    assert (run.state, run.precision, run.backend, run.checked) == ("failed", "fp32", "torch", 8)
    [line] = [r.getMessage() for r in caplog.records]
    assert "bf16 agreed with fp32 on 0 of the first 8 inputs" in line and "running fp32" in line
    torch.manual_seed(0)
    with torch.inference_mode():
        expected = [model(torch.randn(8, 4)) for _ in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(outputs, expected, strict=True))
    record = run.report()
    assert (record["precision"], record["candidate"], record["agreement"]) == ("fp32", "bf16", 0.0)
    assert "fell back to fp32" in record["why"] and "native bf16" in record["why"]


def test_the_guard_keeps_bf16_that_agrees_and_then_runs_it_alone(native_bf16: None) -> None:
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    with torch.no_grad():  # classes far apart: bf16 rounding cannot swap them
        model[0].weight.copy_(torch.tensor([[10.0, 0, 0, 0], [0, 10.0, 0, 0], [0, 0, 10.0, 0]]))
    run = precision.for_bundle(model, _BundleStub(), "auto", device=CPU, guard_items=16)  # type: ignore[arg-type]
    assert isinstance(run, precision.GuardedModel)
    inputs = torch.eye(4)[:3].repeat(4, 1)  # 12 inputs: one class each, clearly
    with torch.inference_mode():
        first = run(inputs)
        assert run.state == "checking" and torch.equal(first, model(inputs))  # fp32's logits
        run(inputs)
        assert (run.state, run.precision, run.agreement) == ("passed", "bf16", 1.0)
        after = run(inputs)
    assert not torch.equal(after, model(inputs))  # the bf16 copy's, rounded
    assert torch.equal(after.argmax(1), model(inputs).argmax(1))


def test_guard_zero_runs_the_pick_unchecked(native_bf16: None) -> None:
    model = _DisagreesInBf16().eval()
    run = precision.for_bundle(model, _BundleStub(), "auto", device=CPU, guard=0)  # type: ignore[arg-type]
    assert isinstance(run, precision.PreparedModel) and run.precision == "bf16"


def test_a_guard_still_checking_says_so(native_bf16: None) -> None:
    run = precision.for_bundle(nn.Linear(4, 3).eval(), _BundleStub(), "auto", device=CPU)  # type: ignore[arg-type]
    assert isinstance(run, precision.GuardedModel)
    assert run.report()["agreement"] is None
    assert "still checking" in run.report()["why"]


# -- OpenVINO and the thread's signal stack --------------------------------------------------


def _signal_stack() -> tuple[int, int]:
    sigaltstack = libc_function("sigaltstack")
    assert sigaltstack is not None
    now = precision._SignalStack()
    sigaltstack(None, ctypes.byref(now))
    return now.ss_sp or 0, now.ss_size


@pytest.mark.skipif(libc_function("sigaltstack") is None, reason="no sigaltstack here")
def test_the_signal_stack_is_put_back_whatever_happens_inside() -> None:
    before = _signal_stack()
    buffer = ctypes.create_string_buffer(1 << 16)
    other = precision._SignalStack(ctypes.addressof(buffer), 0, len(buffer))
    sigaltstack = libc_function("sigaltstack")
    assert sigaltstack is not None
    with pytest.raises(RuntimeError), precision._signal_stack_kept():
        sigaltstack(ctypes.byref(other), None)  # what OpenVINO's compile does
        assert _signal_stack() == (ctypes.addressof(buffer), len(buffer))
        raise RuntimeError("the compile failed")
    assert _signal_stack() == before


@pytest.mark.skipif(not precision.openvino_available(), reason="openvino is not installed")
def test_openvino_models_freed_out_of_order_leave_the_signal_stack_alone(
    tiny_image: Tiny,
) -> None:
    """Two models compiled, the first freed first: the thread must keep its own stack
    (before, it was left on the freed first model's, and the next signal killed the
    process)."""
    before = _signal_stack()
    first = precision.prepare(
        tiny_image.model, "int8", device=CPU, example=tiny_image.example,
        calibration=tiny_image.calibration, int8_backend="openvino",
    )  # fmt: skip
    second = precision.prepare(
        tiny_image.model, "int8", device=CPU, example=tiny_image.example,
        calibration=tiny_image.calibration, int8_backend="openvino",
    )  # fmt: skip
    first(tiny_image.example)
    second(tiny_image.example)
    del first
    gc.collect()
    del second
    gc.collect()
    assert _signal_stack() == before
