"""fp32 against bf16 and int8 inference, side by side in one run, CPU.

Prints one JSON line per figure, all measured in this run:
(a) ``throughput``: img/s of densenet121 at 224 and 112 px (batches 4 and 8) and clips/s of
    r2plus1d_18 at 16x112x112 (batches 2 and 4), channels_last inputs, in fp32, bf16
    (bf16 weights; also bf16 autocast) and int8 (OpenVINO+NNCF when installed, and
    torch's own FX x86 kernels); ``native`` says whether this CPU runs the mode natively.
    Without AVX512_BF16/AMX, bf16 is emulated and only timed for densenet121 (autocast at
    112 px only), to show why it is refused.
    Variants are timed in interleaved rounds (each round times every variant once, after
    an untimed warm-up call each); the median round is reported, with the CPU time per
    item and the load average, since other work on the machine moves the wall clock.
(b) ``agreement``: top-1 agreement with fp32 on held-out synthetic frames/clips of four
    actions that one frame tells apart. The trunk keeps its random weights and only the
    head is fitted on features of other synthetic frames/clips (a few seconds instead of
    training): logits are then well separated, as a trained model's are.
(c) ``prepare``: seconds to export, calibrate and quantize each int8 backend.
(d) ``compile``: torch.compile (inductor) of fp32 densenet121 at 224 px, batch 8: the
    compile time (with an empty inductor cache, and again with the cache that filled), the
    steady-state gain, and the break-even video length at 2 sampled frames per second.
(e) with ``--pt2e`` instead: int8 by torchao's PT2E X86InductorQuantizer + inductor, the
    path PyTorch documents for x86 (``pip install torchao``), against fp32 eager and
    compiled; it lost to OpenVINO here, see the module docstring of clipminer.precision.

Usage: python benchmarks/precision.py [--skip-compile] [--skip-video] [--quick] [--pt2e]
  --quick: densenet121 at 112 px only, batch 4, no compile, no video: checks that it runs.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A fresh inductor cache, so that the first compile here is a first compile; removed at exit.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="clipminer-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import numpy as np
import torch
import torchvision.models as tvm
from torch import Tensor, nn

from clipminer import precision, synth

LABELS = ("bouncing", "spinning", "pulsing", "background")
CPU = torch.device("cpu")
Run = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Case:
    """One model and input layout to measure."""

    model: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    """One input without the batch dimension: C×H×W or C×T×H×W."""
    batches: tuple[int, ...]
    unit: str
    emulated_bf16: tuple[str, ...] = ()
    """The bf16 variants still timed where bf16 is emulated (slow: only where it helps)."""


def _emit(**fields: object) -> None:
    fields["load_avg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(fields), flush=True)


def _inputs(shape: tuple[int, ...], first: int, per_label: int) -> tuple[Tensor, Tensor]:
    """Normalised synthetic frames (C×H×W) or clips (C×T×H×W) of :data:`LABELS` and labels."""
    size = (shape[-2], shape[-1])
    frames_per_item = shape[1] if len(shape) == 4 else 1
    items, targets = [], []
    for k, label in enumerate(LABELS):
        for i in range(first, first + per_label):
            scene = synth.scene(label, seed=0, index=i, size=size)
            pixels = np.stack([scene.render(0.3 * i + t / 15) for t in range(frames_per_item)])
            x = torch.from_numpy(pixels).float().div(255).sub(0.45).div(0.225).permute(3, 0, 1, 2)
            items.append(x if frames_per_item > 1 else x[:, 0])
            targets.append(k)
    return torch.stack(items), torch.tensor(targets)


def _layout(x: Tensor) -> Tensor:
    fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
    return x.contiguous(memory_format=fmt)


def _fit_head(model: nn.Module, head: nn.Linear, train: Tensor, targets: Tensor) -> None:
    """Set the random trunk's BatchNorm statistics on ``train`` (as training would: without
    them activations drift through the layers, unlike a trained model's), then fit ``head``
    on the features the trunk gives ``train``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for batch in train.split(8):
            model(_layout(batch))
    model.eval()
    features: list[Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: features.append(args[0].detach()))
    with torch.inference_mode():
        for batch in train.split(8):
            model(_layout(batch))
    hook.remove()
    feats = torch.cat(features)
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    probe = nn.Linear(feats.shape[1], len(LABELS))
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):
        loss = nn.functional.cross_entropy(probe((feats - mean) / std), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # fold the standardisation into the head
        head.weight.copy_(probe.weight / std)
        head.bias.copy_(probe.bias - (probe.weight * mean / std).sum(1))


def _time_rounds(runs: dict[str, Run], x: Tensor, rounds: int) -> dict[str, tuple[float, float]]:
    """Median seconds and CPU seconds per call of each run, in interleaved rounds."""
    with torch.inference_mode():
        for run in runs.values():
            run(x)
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                run(x)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in runs}


def _autocast_bf16(model: nn.Module) -> Run:
    def run(x: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x).float()

    return run


def measure(case: Case, *, rounds: int, per_label: int) -> None:
    torch.manual_seed(0)
    model = case.build().eval()
    model = model.to(
        memory_format=torch.channels_last if len(case.shape) == 3 else torch.channels_last_3d
    )
    head = model.classifier if isinstance(model, tvm.DenseNet) else model.fc
    train, targets = _inputs(case.shape, 0, per_label)
    _fit_head(model, head, train, targets)
    held_out_inputs, held_out_targets = _inputs(case.shape, 1000, per_label)
    held_out = [_layout(b) for b in held_out_inputs.split(4)]
    example = _layout(train[: max(case.batches)])
    calibration = [_layout(b) for b in train.split(4)]
    size = case.shape[-1] if len(case.shape) == 3 else "x".join(map(str, case.shape[1:]))
    common = {"model": case.model, "size": size}

    native = precision.supported(CPU)
    variants: dict[str, tuple[precision.PreparedModel | None, Run]] = {}
    fp32 = precision.prepare(model, "fp32", device=CPU)
    variants["fp32"] = (fp32, fp32)
    bf16_variants = ("bf16", "bf16-autocast") if "bf16" in native else case.emulated_bf16
    if "bf16" in bf16_variants:
        bf16 = precision.prepare(model, "bf16", device=CPU, allow_emulated=True)
        variants["bf16"] = (bf16, bf16)
    if "bf16-autocast" in bf16_variants:
        variants["bf16-autocast"] = (None, _autocast_bf16(model))
    backends = ["openvino", "torch-fx"] if precision.openvino_available() else ["torch-fx"]
    for backend in backends:
        start = time.perf_counter()
        int8 = precision.prepare(
            model,
            "int8",
            device=CPU,
            example=example,
            calibration=calibration,
            int8_backend=backend,  # type: ignore[arg-type]
        )
        _emit(
            figure="prepare",
            **common,
            precision="int8",
            backend=backend,
            seconds=round(time.perf_counter() - start, 1),
            calibration_items=len(train),
        )
        variants[f"int8-{backend}"] = (int8, int8)

    with torch.inference_mode():
        probs = torch.softmax(torch.cat([fp32(b) for b in held_out]), dim=1)
    _emit(
        figure="reference",
        **common,
        weights="random trunk (BatchNorm statistics set), head fitted on synthetic inputs",
        held_out_items=len(probs),
        fp32_median_top1_probability=round(float(probs.max(1).values.median()), 3),
        fp32_top1_accuracy=round(float((probs.argmax(1) == held_out_targets).float().mean()), 3),
    )
    for name, (prepared, run) in variants.items():
        if prepared is None or name == "fp32":
            continue
        _emit(
            figure="agreement",
            **common,
            precision=prepared.precision,
            backend=prepared.backend,
            native=prepared.precision in native,
            top1_agreement=round(precision.agreement(fp32, run, held_out), 4),
            held_out_items=len(probs),
        )

    for batch in case.batches:
        x = _layout(train[:batch])
        times = _time_rounds({name: run for name, (_, run) in variants.items()}, x, rounds)
        fp32_wall = times["fp32"][0]
        for name, (wall, cpu) in times.items():
            mode = "bf16" if name.startswith("bf16") else name.split("-")[0]
            _emit(
                figure="throughput",
                **common,
                batch=batch,
                precision=mode,
                variant=name,
                native=mode in native,
                **{case.unit: round(batch / wall, 2)},
                cpu_ms_per_item=round(1000 * cpu / batch, 1),
                vs_fp32=round(fp32_wall / wall, 2),
            )


def _compiled(model: nn.Module | Run, x: Tensor) -> tuple[Run, float]:
    """``torch.compile(model)`` and the seconds its first call took."""
    start = time.perf_counter()
    compiled = torch.compile(model)
    with torch.inference_mode():
        compiled(x)
    return compiled, time.perf_counter() - start  # type: ignore[return-value]


def _break_even(compile_seconds: float, eager_per_s: float, compiled_per_s: float) -> dict:
    saved = 1 / eager_per_s - 1 / compiled_per_s
    frames = compile_seconds / saved if saved > 0 else None
    return {
        "break_even_frames": None if frames is None else round(frames),
        "break_even_video_minutes_at_2fps": None if frames is None else round(frames / 120, 1),
    }


def _random_densenet() -> nn.Module:
    torch.manual_seed(0)
    model = tvm.densenet121(num_classes=len(LABELS)).eval()
    return model.to(memory_format=torch.channels_last)


def measure_compile(*, rounds: int) -> None:
    """torch.compile of fp32 densenet121 at 224 px, batch 8: with the empty inductor cache
    this run starts with (a first run), then again with the cache it filled (later runs)."""
    import torch._dynamo

    model = _random_densenet()
    x = _layout(torch.randn(8, 3, 224, 224))
    compiled, cold_seconds = _compiled(model, x)
    times = _time_rounds({"eager": model, "compiled": compiled}, x, rounds)
    eager, fast = 8 / times["eager"][0], 8 / times["compiled"][0]
    torch._dynamo.reset()
    _, warm_seconds = _compiled(model, x)
    _emit(
        figure="compile",
        model="densenet121",
        size=224,
        batch=8,
        precision="fp32",
        compile_seconds_cold_cache=round(cold_seconds, 1),
        compile_seconds_warm_cache=round(warm_seconds, 1),
        eager_img_per_s=round(eager, 2),
        compiled_img_per_s=round(fast, 2),
        vs_eager=round(fast / eager, 2),
        cold=_break_even(cold_seconds, eager, fast),
        warm=_break_even(warm_seconds, eager, fast),
    )


def measure_pt2e(*, rounds: int) -> None:
    """int8 by torchao's PT2E X86InductorQuantizer, compiled by inductor (torchao needed),
    against eager and compiled fp32: densenet121 at 224 px, batch 8, random weights."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    model = _random_densenet()
    x = _layout(torch.randn(8, 3, 224, 224))
    start = time.perf_counter()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    observed = prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
    with torch.no_grad():
        for _ in range(4):
            observed(_layout(torch.randn(8, 3, 224, 224)))
    quantized = convert_pt2e(observed)
    prepare_seconds = time.perf_counter() - start
    compiled_int8, int8_seconds = _compiled(quantized, x)
    compiled_fp32, fp32_seconds = _compiled(model, x)
    times = _time_rounds(
        {"fp32": model, "fp32-compiled": compiled_fp32, "int8-pt2e-compiled": compiled_int8},
        x,
        rounds,
    )
    for name, (wall, cpu) in times.items():
        _emit(
            figure="pt2e",
            model="densenet121",
            size=224,
            batch=8,
            variant=name,
            img_per_s=round(8 / wall, 2),
            cpu_ms_per_item=round(1000 * cpu / 8, 1),
            vs_fp32=round(times["fp32"][0] / wall, 2),
            prepare_seconds=round(prepare_seconds, 1) if name.startswith("int8") else None,
            compile_seconds=round(int8_seconds if name.startswith("int8") else fp32_seconds, 1)
            if "compiled" in name
            else None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per batch size")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--quick", action="store_true", help="112 px, batch 4, nothing else")
    parser.add_argument(
        "--pt2e", action="store_true", help="only torchao's PT2E int8 + inductor (needs torchao)"
    )
    args = parser.parse_args()
    if args.pt2e:
        torch.set_num_threads(2)
        measure_pt2e(rounds=args.rounds)
        return
    torch.set_num_threads(2)
    started = time.perf_counter()
    densenet = lambda: tvm.densenet121(num_classes=len(LABELS))  # noqa: E731
    cases = [Case("densenet121", densenet, (3, 112, 112), (4,), "img_per_s", ("bf16",))]
    if not args.quick:
        cases = [
            Case("densenet121", densenet, (3, 224, 224), (4, 8), "img_per_s", ("bf16",)),
            Case(
                "densenet121",
                densenet,
                (3, 112, 112),
                (4, 8),
                "img_per_s",
                ("bf16", "bf16-autocast"),
            ),
        ]
        if not args.skip_video:
            r2plus1d = lambda: tvm.video.r2plus1d_18(num_classes=len(LABELS))  # noqa: E731
            cases.append(Case("r2plus1d_18", r2plus1d, (3, 16, 112, 112), (2, 4), "clips_per_s"))
    for case in cases:
        per_label = 4 if case.unit == "clips_per_s" or args.quick else 8
        measure(case, rounds=2 if args.quick else args.rounds, per_label=per_label)
    if not (args.quick or args.skip_compile):
        measure_compile(rounds=args.rounds)
    _emit(
        figure="run",
        seconds=round(time.perf_counter() - started, 1),
        torch=torch.__version__,
        cpu_native_bf16=precision.cpu_has_native_bf16(),
        supported=precision.supported(CPU),
        openvino=precision.openvino_available(),
        threads=torch.get_num_threads(),
    )


if __name__ == "__main__":
    main()
