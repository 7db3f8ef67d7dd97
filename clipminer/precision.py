"""Low-precision inference: bf16 and int8 versions of a float model, with an accuracy guard.

:func:`prepare` turns an fp32 classifier into a :class:`PreparedModel` that takes the
same float input and returns float32 logits; :func:`choose` implements
``--precision auto``: the fastest mode this device runs natively whose top-1 agrees
with fp32 on held-out inputs. :meth:`PreparedModel.state` and :func:`restore` keep an
int8 model in plain tensors and dicts, so a bundle holding it still loads with
``torch.load(weights_only=True)``.

Backends:

* ``torch``: the model itself (fp32), or a bf16 copy of it. On the CPU, bf16 means
  bf16 weights and activations (oneDNN kernels; native only with AVX512_BF16 or AMX);
  on CUDA, autocast.
* ``openvino``: int8 by post-training static quantization with NNCF, run by OpenVINO
  (``pip install openvino nncf``); used when both packages import. On a 2-core AVX2
  EPYC (two runs) it ran densenet121 at 3-4.7× (224 px) and 4.5-6.8× (112 px) and
  r2plus1d_18 at 2.7-3× the fp32 speed, after about 45 s to export and calibrate.
* ``torch-fx``: int8 with torch's own FX quantization (fbgemm/oneDNN ``x86`` kernels);
  no extra packages, 1.65-2.6× fp32 on the same machine.

Not used: torchao's PT2E ``X86InductorQuantizer`` (PT2E left torch for torchao): it
needs inductor, and on that CPU (no VNNI) int8 compiled ran at 0.9× eager fp32 after
about 3.5 minutes of quantization and compilation. ``benchmarks/precision.py`` measures
all of them.

Inputs ("model inputs" below) are what the fp32 model takes: float N×C×H×W (images)
or N×C×T×H×W (clips), already normalised.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import importlib.util
import io
import logging
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from clipminer.config import PRECISIONS, Int8Backend, Precision
from clipminer.errors import BundleError, UsageError
from clipminer.memory import libc_function
from clipminer.models.bundle import Bundle

logger = logging.getLogger(__name__)

Mode = Literal["fp32", "bf16", "int8"]
"""A precision a model actually runs at."""
Backend = Literal["torch", "openvino", "torch-fx"]

MODES: tuple[str, ...] = get_args(Mode)
STATE_FORMAT = "clipminer-precision/1"


@dataclass(frozen=True, repr=False)
class PreparedModel:
    """A model ready to run at one precision: model inputs in, float32 logits out.

    Call it like the fp32 model (under no particular grad mode); inputs may be on
    any device and are moved to :attr:`device`, where the logits are returned.
    """

    run: Callable[[Tensor], Tensor]
    """The low-level forward: takes inputs on :attr:`device`, returns logits."""
    precision: Mode
    backend: Backend
    device: torch.device
    saved: Mapping[str, Any] = field(default_factory=dict)
    """Backend-specific payload of :meth:`state` (quantized weights); empty for fp32/bf16."""
    agreement: float | None = None
    """Top-1 agreement with fp32 on held-out inputs, when :func:`choose` measured it."""
    items_per_second: float | None = None
    """Inputs per second on the timing example, when :func:`choose` measured it."""
    network: nn.Module | None = field(default=None, compare=False)
    """The torch module that :attr:`run` calls, where there is one (not OpenVINO): forward
    hooks on its layers see what the model computes (:mod:`clipminer.models.features`)."""

    @property
    def networks(self) -> tuple[nn.Module, ...]:
        """:attr:`network`, where there is one (as :attr:`GuardedModel.networks`)."""
        return () if self.network is None else (self.network,)

    def __call__(self, inputs: Tensor) -> Tensor:
        """Float32 logits N×K for model inputs N×…."""
        with torch.inference_mode():
            logits = self.run(inputs.to(self.device))
        return logits.float()

    def __repr__(self) -> str:
        extra = "" if self.agreement is None else f", agreement={self.agreement:.4f}"
        return (
            f"PreparedModel(precision={self.precision!r}, backend={self.backend!r}, "
            f"device={self.device}{extra})"
        )

    def state(self) -> dict[str, Any]:
        """What :func:`restore` needs, as plain dicts, lists and tensors.

        It loads with ``torch.load(weights_only=True)``. For fp32 and bf16 it only names
        the mode (they are rebuilt from the fp32 weights); for int8 it holds the quantized
        model, so that loading needs no calibration data.
        """
        return {
            "format": STATE_FORMAT,
            "precision": self.precision,
            "backend": self.backend,
            **dict(self.saved),
        }


# -- what this machine supports -----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes in bf16 natively (AVX512_BF16 or AMX-BF16).

    Without it oneDNN emulates bf16, several times slower than fp32 (measured: 4× on
    an AVX2 EPYC for densenet121).
    """
    flags = cpu_flags() if flags is None else flags
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512_BF16")


def _importable(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def openvino_available() -> bool:
    """Whether the ``openvino`` and ``nncf`` packages are installed."""
    return _importable("openvino", "nncf")


def _cpu_int8_available() -> bool:
    if openvino_available():
        return True
    engines = torch.backends.quantized.supported_engines
    return "x86" in engines and torch.backends.cpu.get_cpu_capability() != "DEFAULT"


def supported(device: torch.device) -> list[Mode]:
    """The modes ``device`` runs natively, fp32 first.

    CPU: fp32; bf16 with AVX512_BF16 or AMX; int8 with OpenVINO or torch's x86 kernels
    (AVX2 or better). CUDA: fp32, and bf16 where the GPU supports it (Ampere on).
    """
    modes: list[Mode] = ["fp32"]
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            modes.append("bf16")
    elif device.type == "cpu":
        if cpu_has_native_bf16():
            modes.append("bf16")
        if _cpu_int8_available():
            modes.append("int8")
    return modes


def check_precision(precision: str) -> Precision:
    """``precision`` as a :data:`Precision`; UsageError naming the allowed values."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision  # type: ignore[return-value]


# -- preparing one mode -------------------------------------------------------------------


def prepare(
    model: nn.Module,
    precision: Mode,
    *,
    device: torch.device,
    example: Tensor | None = None,
    calibration: Iterable[Tensor] | None = None,
    int8_backend: Int8Backend = "auto",
    compile: bool = False,
    allow_emulated: bool = False,
) -> PreparedModel:
    """``model`` (fp32, eval mode) made to run at ``precision`` on ``device``.

    fp32 and CUDA bf16 run ``model`` itself; CPU bf16 and int8 work on copies.

    Args:
        model: the fp32 classifier.
        precision: "fp32", "bf16" or "int8" (for "auto" see :func:`choose`).
        device: where it runs.
        example: one batch of model inputs; int8 needs it (for export and tracing).
        calibration: batches of model inputs from the user's own data; int8 needs them
            (a few hundred frames or a few dozen clips are plenty).
        int8_backend: "auto" (OpenVINO when installed, else torch-fx), "openvino" or
            "torch-fx".
        compile: ``torch.compile`` the torch backend (fp32, bf16). The first call then
            takes minutes; it pays off on long videos (see ``benchmarks/precision.py``).
        allow_emulated: run bf16 or int8 where the device has no native support (slow;
            for measurements and tests).

    Raises:
        UsageError: an unknown or unsupported mode, missing example or calibration
            data, or a model that cannot be quantized (the message says why).
    """
    if precision not in MODES:
        hint = " (use choose() for auto)" if precision == "auto" else ""
        raise UsageError(f"precision must be one of {', '.join(MODES)}, got {precision!r}{hint}")
    available = supported(device)
    if precision not in available and not allow_emulated:
        raise UsageError(
            f"--precision {precision} is not supported on {device} here "
            f"(supported: {', '.join(available)}){_why_not(precision, device)}"
        )
    model = model.eval()
    if precision == "fp32":
        run = _maybe_compile(model.to(device), compile)
        return PreparedModel(run, "fp32", "torch", device, network=model)
    if precision == "bf16":
        return _prepare_bf16(model, device=device, compile=compile)
    if device.type != "cpu":
        raise UsageError(f"--precision int8 runs on the CPU only, not on {device}")
    if example is None:
        raise UsageError("--precision int8 needs an example batch of model inputs")
    batches = [] if calibration is None else [b.detach().float().cpu() for b in calibration]
    if not batches:
        raise UsageError("--precision int8 needs calibration inputs (frames or clips)")
    backend = _int8_backend(int8_backend)
    example = example.detach().float().cpu()
    model = copy.deepcopy(model).cpu().float()
    if backend == "openvino":
        return _int8_openvino(model, example, batches)
    return _int8_fx(model, example, batches)


def _why_not(precision: str, device: torch.device) -> str:
    if precision == "bf16" and device.type == "cpu":
        return "; this CPU lacks AVX512_BF16/AMX, so bf16 would run emulated and slower"
    if precision == "int8" and device.type == "cuda":
        return "; int8 runs on the CPU only"
    if precision == "bf16" and device.type == "cuda":
        return "; this GPU has no bf16 support"
    return ""


def _int8_backend(choice: Int8Backend) -> Literal["openvino", "torch-fx"]:
    if choice not in get_args(Int8Backend):
        raise UsageError(f"int8 backend must be auto, openvino or torch-fx, got {choice!r}")
    if choice == "openvino" and not openvino_available():
        raise UsageError("int8 backend openvino needs: pip install openvino nncf")
    if choice == "auto":
        return "openvino" if openvino_available() else "torch-fx"
    return choice


def _maybe_compile(model: nn.Module, compile: bool) -> Callable[[Tensor], Tensor]:
    return torch.compile(model) if compile else model


def _prepare_bf16(model: nn.Module, *, device: torch.device, compile: bool) -> PreparedModel:
    if device.type == "cuda":
        net = _maybe_compile(model.to(device), compile)

        def run_autocast(inputs: Tensor) -> Tensor:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return net(inputs)

        return PreparedModel(run_autocast, "bf16", "torch", device, network=model)
    # CPU: bf16 weights, converted once (autocast would re-cast them on every call).
    copy_bf16 = copy.deepcopy(model).to(device=device, dtype=torch.bfloat16)
    net = _maybe_compile(copy_bf16, compile)

    def run_bf16(inputs: Tensor) -> Tensor:
        return net(inputs.to(torch.bfloat16))

    return PreparedModel(run_bf16, "bf16", "torch", device, network=copy_bf16)


def _at_least_two(example: Tensor) -> Tensor:
    """An example with a batch of 2 or more (export would specialise a batch of 1)."""
    return example if example.shape[0] >= 2 else example.expand(2, *example.shape[1:]).clone()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# -- int8 with OpenVINO and NNCF ----------------------------------------------------------


class _SignalStack(ctypes.Structure):
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


@contextlib.contextmanager
def _signal_stack_kept() -> Iterator[None]:
    """Leaves the calling thread's alternate signal stack as it was.

    OpenVINO's CPU plugin installs a signal stack of its own when it compiles a model
    and puts back the one it found when that model is freed. Freed out of order, a
    thread is left with a stack that no longer exists, and the next signal it takes (a
    DataLoader worker's SIGCHLD, say) kills the process with SIGSEGV and no Python trace
    (found with gdb: si_code SI_KERNEL, in poll). With the stack put back at once, every
    model finds, and later restores, the thread's own.
    """
    sigaltstack = libc_function("sigaltstack")
    if sigaltstack is None:
        yield
        return
    saved = _SignalStack()
    sigaltstack(None, ctypes.byref(saved))
    try:
        yield
    finally:
        sigaltstack(ctypes.byref(saved), None)


def _int8_openvino(model: nn.Module, example: Tensor, batches: list[Tensor]) -> PreparedModel:
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)
    example = _at_least_two(example)
    batch = torch.export.Dim("batch", min=1)
    try:
        exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        float_model = ov.convert_model(exported)
        with _signal_stack_kept(), contextlib.redirect_stdout(io.StringIO()):  # NNCF's bars
            quantized = nncf.quantize(
                float_model,
                nncf.Dataset([b.contiguous().numpy() for b in batches]),
                subset_size=len(batches),
            )
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        raise UsageError(
            f"--precision int8: OpenVINO could not quantize {type(model).__name__} "
            f"({_first_line(exc)})"
        ) from exc
    xml, weights = _serialize_openvino(quantized)
    return _openvino_model(xml, weights, shape=list(example.shape[1:]))


def _serialize_openvino(ov_model: Any) -> tuple[bytes, bytes]:
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="clipminer-ov-") as tmp:
        xml_path = Path(tmp) / "model.xml"
        ov.save_model(ov_model, xml_path, compress_to_fp16=False)
        return xml_path.read_bytes(), xml_path.with_suffix(".bin").read_bytes()


def _openvino_model(xml: bytes, weights: bytes, *, shape: list[int]) -> PreparedModel:
    import openvino as ov

    core = ov.Core()
    ov_model = core.read_model(
        model=xml.decode("utf-8"), weights=ov.Tensor(np.frombuffer(weights, np.uint8).copy())
    )
    with _signal_stack_kept():
        compiled = core.compile_model(
            ov_model,
            "CPU",
            {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"},
        )
        request = compiled.create_infer_request()

    def run(inputs: Tensor) -> Tensor:
        array = inputs.detach().float().cpu().contiguous().numpy()
        with _signal_stack_kept():
            request.infer({0: array})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    saved = {
        "openvino_version": ov.get_version(),
        "input_shape": shape,
        "xml": torch.frombuffer(bytearray(xml), dtype=torch.uint8),
        "weights": torch.frombuffer(bytearray(weights), dtype=torch.uint8),
    }
    return PreparedModel(run, "int8", "openvino", torch.device("cpu"), saved=saved)


# -- int8 with torch's FX quantization ----------------------------------------------------


def _fx_convert(model: nn.Module, example: Tensor, batches: Sequence[Tensor]) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        # FX quantization is deprecated in favour of torchao's PT2E, measured slower here.
        warnings.simplefilter("ignore")
        observed = prepare_fx(model, get_default_qconfig_mapping("x86"), (example,))
        with torch.no_grad():
            for batch in batches:
                observed(batch)
        return convert_fx(observed)


def _int8_fx(model: nn.Module, example: Tensor, batches: list[Tensor]) -> PreparedModel:
    try:
        quantized = _fx_convert(model, example, batches)
    except (RuntimeError, TypeError, ValueError, NotImplementedError, AttributeError) as exc:
        # Symbolic tracing fails on data-dependent control flow, among others.
        raise UsageError(
            f"--precision int8: torch-fx could not quantize {type(model).__name__} "
            f"({_first_line(exc)})"
        ) from exc
    return _fx_model(quantized, shape=list(example.shape[1:]))


def _fx_model(quantized: nn.Module, *, shape: list[int]) -> PreparedModel:
    state = quantized.state_dict()
    saved = {
        "torch_version": torch.__version__.split("+")[0],
        "input_shape": shape,
        "state_dict": dict(state),
        # Module versions: quantized Linear reads its legacy layout without them.
        "state_versions": {
            key: int(meta["version"])
            for key, meta in getattr(state, "_metadata", {}).items()
            if "version" in meta
        },
    }
    return PreparedModel(
        quantized, "int8", "torch-fx", torch.device("cpu"), saved=saved, network=quantized
    )


# -- saving and loading -------------------------------------------------------------------


def restore(
    model: nn.Module,
    state: Mapping[str, Any],
    *,
    device: torch.device,
    compile: bool = False,
) -> PreparedModel:
    """The prepared model that :meth:`PreparedModel.state` described.

    Args:
        model: the fp32 model the state was made from (weights loaded); int8 with
            torch-fx needs its structure, fp32 and bf16 are rebuilt from it.
        state: what :meth:`PreparedModel.state` returned (after a weights-only load).
        device: where it runs.
        compile: as in :func:`prepare`.

    Raises:
        BundleError: the state is malformed, or does not fit ``model``.
        UsageError: its mode or backend cannot run here (for example OpenVINO is not
            installed).
    """
    if state.get("format") != STATE_FORMAT:
        raise BundleError(f"not a clipminer precision state (format {state.get('format')!r})")
    precision, backend = state.get("precision"), state.get("backend")
    if precision not in MODES:
        raise BundleError(f"precision state names an unknown mode {precision!r}")
    if precision != "int8":
        return prepare(model, precision, device=device, compile=compile)
    if device.type != "cpu":
        raise UsageError(f"an int8 model runs on the CPU only, not on {device}")
    try:
        shape = [int(v) for v in state["input_shape"]]
        if backend == "openvino":
            if not openvino_available():
                raise UsageError(
                    "this int8 model was quantized with OpenVINO, which is not installed here "
                    "(pip install openvino nncf, or use --precision fp32)"
                )
            xml = bytes(state["xml"].numpy().tobytes())
            weights = bytes(state["weights"].numpy().tobytes())
            return _openvino_model(xml, weights, shape=shape)
        if backend == "torch-fx":
            example = torch.zeros(2, *shape)
            skeleton = _fx_convert(copy.deepcopy(model).cpu().float().eval(), example, [])
            fx_state = OrderedDict(state["state_dict"])
            fx_state._metadata = OrderedDict(  # type: ignore[attr-defined]
                (key, {"version": int(version)})
                for key, version in dict(state.get("state_versions", {})).items()
            )
            skeleton.load_state_dict(fx_state)
            return _fx_model(skeleton, shape=shape)
    except (KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"malformed int8 precision state ({_first_line(exc)})") from None
    except RuntimeError as exc:
        raise BundleError(
            f"the int8 weights do not fit {type(model).__name__} ({_first_line(exc)})"
        ) from None
    raise BundleError(f"precision state names an unknown int8 backend {backend!r}")


# -- the guard and auto -------------------------------------------------------------------


def agreement(
    reference: Callable[[Tensor], Tensor],
    candidate: Callable[[Tensor], Tensor],
    batches: Iterable[Tensor],
) -> float:
    """Share of inputs whose top-1 class is the same under both models (0..1).

    Raises:
        UsageError: ``batches`` is empty.
    """
    same = total = 0
    with torch.inference_mode():
        for batch in batches:
            ref = reference(batch).argmax(dim=1).cpu()
            got = candidate(batch).argmax(dim=1).cpu()
            same += int((ref == got).sum())
            total += len(ref)
    if total == 0:
        raise UsageError("agreement needs at least one held-out input")
    return same / total


def items_per_second(
    model: Callable[[Tensor], Tensor], example: Tensor, *, repeats: int = 3
) -> float:
    """Inputs per second on ``example``: one warm-up call, then the fastest of ``repeats``."""
    with torch.inference_mode():
        model(example)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(example)
            best = min(best, time.perf_counter() - start)
    return len(example) / max(best, 1e-9)


def choose(
    model: nn.Module,
    *,
    device: torch.device,
    example: Tensor,
    calibration: Iterable[Tensor] | None,
    held_out: Iterable[Tensor],
    min_agreement: float = 0.99,
    modes: Sequence[Mode] | None = None,
    prepare_fn: Callable[..., PreparedModel] = prepare,
    repeats: int = 3,
) -> PreparedModel:
    """``--precision auto``: the fastest mode whose top-1 agrees with fp32 on ``held_out``.

    Every mode of ``modes`` (default: :func:`supported`) is prepared, timed on
    ``example`` and checked against fp32; one that fails to prepare or agrees on fewer
    than ``min_agreement`` of the held-out inputs is skipped, and fp32 wins when nothing
    is faster. The choice and the reasons are logged.

    Args:
        model: the fp32 classifier.
        device: where it runs.
        example: one batch of model inputs, for timing (and for int8, export).
        calibration: batches for int8 calibration (int8 is skipped without them); keep
            them apart from ``held_out``.
        held_out: batches of model inputs the guard compares on.
        min_agreement: the least top-1 agreement with fp32 accepted (0..1).
        modes: the modes to try; fp32 is always the fallback.
        prepare_fn: :func:`prepare` or a stand-in with its signature (for tests).
        repeats: timed calls per mode.

    Returns:
        The chosen model, with :attr:`PreparedModel.agreement` and
        :attr:`PreparedModel.items_per_second` filled in.
    """
    if not 0 < min_agreement <= 1:
        raise UsageError(f"min_agreement must be in (0, 1], got {min_agreement}")
    held = list(held_out)
    if not held:
        raise UsageError("--precision auto needs held-out inputs for its accuracy guard")
    calib = None if calibration is None else list(calibration)
    reference = prepare_fn(model, "fp32", device=device, example=example)
    fp32_speed = items_per_second(reference, example, repeats=repeats)
    best = replace(reference, agreement=1.0, items_per_second=fp32_speed)
    logger.info("precision auto: fp32 %.2f inputs/s", fp32_speed)
    for mode in modes if modes is not None else supported(device):
        if mode == "fp32":
            continue
        if mode == "int8" and not calib:
            logger.info("precision auto: int8 skipped, no calibration inputs")
            continue
        try:
            candidate = prepare_fn(model, mode, device=device, example=example, calibration=calib)
        except UsageError as exc:
            logger.warning("precision auto: %s skipped: %s", mode, exc)
            continue
        agree = agreement(reference, candidate, held)
        speed = items_per_second(candidate, example, repeats=repeats)
        verdict = "passes" if agree >= min_agreement else "fails"
        logger.info(
            "precision auto: %s (%s) %.2f inputs/s (%.2f× fp32), top-1 agreement %.4f %s the "
            "guard of %.2f",
            mode,
            candidate.backend,
            speed,
            speed / fp32_speed,
            agree,
            verdict,
            min_agreement,
        )
        if agree >= min_agreement and speed > (best.items_per_second or 0.0):
            best = replace(candidate, agreement=agree, items_per_second=speed)
    logger.info(
        "precision auto: chose %s (%s), %.2f inputs/s, %.2f× fp32",
        best.precision,
        best.backend,
        best.items_per_second or 0.0,
        (best.items_per_second or 0.0) / fp32_speed,
    )
    return best


def resolve(
    model: nn.Module,
    precision: str,
    *,
    device: torch.device,
    example: Tensor,
    calibration: Iterable[Tensor] | None = None,
    held_out: Iterable[Tensor] | None = None,
    min_agreement: float = 0.99,
    int8_backend: Int8Backend = "auto",
) -> PreparedModel:
    """One entry point for ``--precision``: :func:`choose` for auto, :func:`prepare` else.

    An explicit int8 is still checked against fp32 when ``held_out`` is given: below
    ``min_agreement`` it raises rather than run a model that disagrees.

    Raises:
        UsageError: as :func:`prepare`; or int8 failed the guard.
    """
    mode = check_precision(precision)
    if mode == "auto":
        return choose(
            model,
            device=device,
            example=example,
            calibration=calibration,
            held_out=held_out or [],
            min_agreement=min_agreement,
            prepare_fn=functools.partial(prepare, int8_backend=int8_backend),
        )
    prepared = prepare(
        model,
        mode,
        device=device,
        example=example,
        calibration=calibration,
        int8_backend=int8_backend,
    )
    if mode != "fp32" and held_out is not None:
        reference = prepare(model, "fp32", device=device)
        agree = agreement(reference, prepared, held_out)
        if agree < min_agreement:
            raise UsageError(
                f"--precision {mode}: top-1 agreement with fp32 is {agree:.4f} on the "
                f"held-out inputs, below {min_agreement:.2f} (use fp32 or auto)"
            )
        prepared = replace(prepared, agreement=agree)
    return prepared


# -- bundles ------------------------------------------------------------------------------


GUARD_ITEMS = {"image": 64, "video": 8}
"""How many of a run's first inputs the guard of ``--precision auto`` checks: frames for
the image model, re-label windows for a video model."""


class GuardedModel:
    """``--precision auto``'s pick (bf16 or int8), checked against fp32 on the run's own
    first inputs.

    The first ``needed`` inputs run through both models and get the fp32 logits; their
    top-1 agreement decides. At ``min_agreement`` or more the candidate runs alone from
    then on; below it (as soon as too many disagree to reach it) fp32 does, and one
    warning line says so. Called, and read for ``precision``, like a
    :class:`PreparedModel`.

    Args:
        candidate: the low-precision model.
        reference: the same model in fp32.
        min_agreement: the least top-1 agreement accepted (0..1).
        needed: inputs checked before the candidate runs alone.
        name: the model, for the log line.
        why: why auto picked the candidate (``run.json``).
    """

    def __init__(
        self,
        candidate: PreparedModel,
        reference: PreparedModel,
        *,
        min_agreement: float,
        needed: int,
        name: str,
        why: str,
    ) -> None:
        self.candidate, self.reference = candidate, reference
        self.min_agreement, self.needed = min_agreement, max(1, needed)
        self.name, self.why = name, why
        self.same = self.checked = 0
        self.state: Literal["checking", "passed", "failed"] = "checking"

    @property
    def current(self) -> PreparedModel:
        """The model whose logits callers get now."""
        return self.candidate if self.state == "passed" else self.reference

    @property
    def precision(self) -> Mode:
        """The mode this model runs at: the candidate's unless the guard failed it."""
        return self.reference.precision if self.state == "failed" else self.candidate.precision

    @property
    def backend(self) -> Backend:
        return (self.reference if self.state == "failed" else self.candidate).backend

    @property
    def device(self) -> torch.device:
        return self.candidate.device

    @property
    def saved(self) -> Mapping[str, Any]:
        return self.candidate.saved

    @property
    def networks(self) -> tuple[nn.Module, ...]:
        """Both models' torch networks: feature hooks on the same layer of each see the
        model whose logits are returned last."""
        both = (*self.candidate.networks, *self.reference.networks)
        return tuple({id(net): net for net in both}.values())  # CUDA bf16 shares one

    @property
    def agreement(self) -> float | None:
        return self.same / self.checked if self.checked else None

    def __call__(self, inputs: Tensor) -> Tensor:
        if self.state == "passed":
            return self.candidate(inputs)
        if self.state == "failed":
            return self.reference(inputs)
        low = self.candidate(inputs)
        logits = self.reference(inputs)  # last: the feature hooks keep fp32's features
        self.same += int((low.argmax(dim=1).cpu() == logits.argmax(dim=1).cpu()).sum())
        self.checked += len(logits)
        self._decide()
        return logits

    def _decide(self) -> None:
        mode = self.candidate.precision
        wrong_allowed = (1 - self.min_agreement) * self.needed
        if self.checked - self.same > wrong_allowed + 1e-9:
            self.state = "failed"
            logger.warning(
                "%s: %s agreed with fp32 on %d of the first %d inputs (guard %.2f): running fp32",
                self.name, mode, self.same, self.checked, self.min_agreement,
            )  # fmt: skip
        elif self.checked >= self.needed:
            self.state = "passed"
            logger.info(
                "%s: %s agreed with fp32 on %d of the first %d inputs: running %s",
                self.name, mode, self.same, self.checked, mode,
            )  # fmt: skip

    def report(self) -> dict[str, Any]:
        """What ``run.json`` records: the mode run, the one tried, the agreement measured
        (top-1, on how many inputs) and why."""
        agreement = self.agreement
        outcome = {
            "checking": "still checking when the run ended",
            "passed": "passed the guard",
            "failed": "failed the guard, fell back to fp32",
        }[self.state]
        return {
            "precision": self.precision,
            "candidate": self.candidate.precision,
            "agreement": None if agreement is None else round(agreement, 4),
            "checked": self.checked,
            "min_agreement": self.min_agreement,
            "why": f"{self.why}; {outcome}",
        }


Runner = PreparedModel | GuardedModel
"""A model as find-clips runs it: at one precision, or auto's pick under its guard."""


def report(model: Runner) -> dict[str, Any]:
    """What ``run.json`` records about how ``model`` ran (see :meth:`GuardedModel.report`)."""
    if isinstance(model, GuardedModel):
        return model.report()
    return {"precision": model.precision, "why": "asked for, or nothing faster runs here"}


def for_bundle(
    model: nn.Module,
    bundle: Bundle,
    precision: str,
    *,
    device: torch.device,
    guard: float = 0.98,
    guard_items: int = GUARD_ITEMS["image"],
) -> Runner:
    """``model`` (the fp32 network of ``bundle``) at the ``--precision`` asked for.

    ``auto`` is the fastest mode this device runs natively: the int8 weights that
    ``clipminer quantize`` stored in the bundle (CPU), else bf16 where the CPU has
    AVX512_BF16 or AMX or the GPU has bf16, else fp32. Anything but fp32 runs under a
    :class:`GuardedModel` that falls back to fp32 when its top-1 agrees with fp32 on
    fewer than ``guard`` of the first ``guard_items`` inputs (``guard`` 0: no guard).
    ``int8`` needs a bundle quantized to int8; ``bf16`` and ``fp32`` are made from the
    fp32 weights.

    Raises:
        UsageError: the mode cannot run here, or int8 was asked of a bundle without
            int8 weights (the message says how to make them).
        BundleError: the stored precision state is malformed.
    """
    mode = check_precision(precision)
    stored = bundle.precision
    name = bundle.source or "the model"
    if mode == "int8":
        if not stored or stored.get("precision") != "int8":
            raise UsageError(
                f"{name}: has no int8 weights; make them with "
                f"`clipminer quantize {bundle.source or 'MODEL.pt'} --calibration VIDEO_OR_FOLDER "
                "--precision int8 --out MODEL-int8.pt`"
            )
        return restore(model, stored, device=device)
    if mode != "auto":
        return prepare(model, mode, device=device)
    picked = _auto_candidate(model, stored, device=device, name=str(name))
    if picked is None:
        return prepare(model, "fp32", device=device)
    candidate, why = picked
    if guard <= 0:
        return candidate
    reference = prepare(model, "fp32", device=device)
    return GuardedModel(
        candidate, reference, min_agreement=guard, needed=guard_items, name=str(name), why=why
    )


def _auto_candidate(
    model: nn.Module, stored: Mapping[str, Any] | None, *, device: torch.device, name: str
) -> tuple[PreparedModel, str] | None:
    """The mode ``auto`` tries before fp32, and why; None for fp32."""
    if device.type == "cpu" and stored and stored.get("precision") == "int8":
        try:
            return restore(model, stored, device=device), "the bundle holds int8 weights"
        except UsageError as exc:  # e.g. OpenVINO missing here: auto may fall back
            logger.warning("%s: running fp32, its int8 model cannot run here: %s", name, exc)
            return None
    if "bf16" in supported(device):
        why = "the GPU has bf16" if device.type == "cuda" else "the CPU has native bf16"
        return prepare(model, "bf16", device=device), why
    return None
