"""Which device and precision the model runs with, and what each kind of device can and cannot do.

Pure functions over what torch reports (`Accelerators`), so every rule is testable without a GPU:
`--device auto` picks CUDA, then Apple's MPS, then the CPU; a bad `cuda:N` is a clear `DeviceError`;
the default precision follows the GPU's compute capability (bf16 from Ampere, fp16 on Volta and
Turing, fp32 before); `DevicePolicy` says which MPS work-arounds apply. Errors raised by a GPU are
sorted into out-of-memory (recoverable) and sticky (the CUDA context is dead: exit).

Imports torch only (it sits beside the network in core/model).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch

PRECISIONS = ("float32", "bfloat16", "float16")

# set before torch runs an MPS op that has no Metal kernel: it then runs on the CPU instead of failing
MPS_FALLBACK_VARIABLE = "PYTORCH_ENABLE_MPS_FALLBACK"


class DeviceError(ValueError):
    """A device or precision the machine cannot honour; the message says what it has."""


@dataclass(frozen=True)
class Accelerators:
    """What torch sees on this machine (injected in tests)."""

    cuda_count: int = 0
    mps: bool = False
    # compute capability (major, minor) and name of each CUDA device, by index
    capabilities: tuple[tuple[int, int], ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def detect(cls) -> "Accelerators":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        mps_backend = getattr(torch.backends, "mps", None)
        mps = bool(mps_backend is not None and mps_backend.is_available())
        return cls(
            cuda_count=count,
            mps=mps,
            capabilities=tuple(torch.cuda.get_device_capability(i) for i in range(count)),
            names=tuple(torch.cuda.get_device_name(i) for i in range(count)),
        )

    def describe(self) -> str:
        parts = [f"cuda:{i} ({self.names[i] if i < len(self.names) else 'GPU'})" for i in range(self.cuda_count)]
        if self.mps:
            parts.append("mps")
        parts.append("cpu")
        return ", ".join(parts)


def resolve_device(name: "str | torch.device | None", available: Accelerators | None = None) -> torch.device:
    """`auto` (or None): CUDA, then MPS, then CPU. Otherwise `cpu`, `mps`, `cuda` or `cuda:N`, checked
    against what the machine has, so a mistake is one clear sentence instead of a CUDA traceback."""
    seen = available if available is not None else Accelerators.detect()
    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        if seen.cuda_count:
            return torch.device("cuda", 0)
        return torch.device("mps") if seen.mps else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, mps, cuda or cuda:N") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if seen.cuda_count == 0:
            raise DeviceError(f"--device {text}: torch sees no CUDA device (this machine has: {seen.describe()})")
        index = 0 if device.index is None else device.index
        if index >= seen.cuda_count:
            raise DeviceError(
                f"--device {text}: there is no CUDA device {index}; torch sees {seen.cuda_count} "
                f"({seen.describe()}); CUDA_VISIBLE_DEVICES renumbers them from 0"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not seen.mps:
            raise DeviceError(f"--device mps: Apple's Metal backend is not available here (this machine has: "
                              f"{seen.describe()})")
        return torch.device("mps")
    raise DeviceError(f"unsupported device {name!r}: use auto, cpu, mps, cuda or cuda:N")


def capability_of(device: torch.device, available: Accelerators | None = None) -> tuple[int, int] | None:
    """Compute capability of a CUDA device; None for other devices."""
    if device.type != "cuda":
        return None
    seen = available if available is not None else Accelerators.detect()
    index = 0 if device.index is None else device.index
    return seen.capabilities[index] if index < len(seen.capabilities) else None


def default_precision(device: torch.device, capability: tuple[int, int] | None = None) -> str:
    """What a session runs in when nobody asked: bf16 autocast on Ampere and later (as the official
    predictor), fp16 on Volta/Turing (no fast bf16 there), fp32 on older GPUs, MPS and the CPU."""
    if device.type != "cuda" or capability is None:
        return "float32"
    if capability >= (8, 0):
        return "bfloat16"
    if capability >= (7, 0):
        return "float16"
    return "float32"


def check_precision(device: torch.device, precision: str, capability: tuple[int, int] | None = None) -> str:
    """`precision` if the device can run it, else a DeviceError saying what it can run."""
    if precision not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    policy = DevicePolicy.for_device(device)
    if precision not in policy.precisions:
        raise DeviceError(f"{device.type} runs {' or '.join(policy.precisions)}, not {precision}")
    if device.type == "cuda" and precision == "bfloat16" and capability is not None and capability < (8, 0):
        raise DeviceError(
            f"bfloat16 needs an Ampere or later GPU (compute capability 8.0); this one is "
            f"{capability[0]}.{capability[1]}: use float16 or float32"
        )
    return precision


def choose_precision(
    device: torch.device, requested: str | None = None, available: Accelerators | None = None
) -> str:
    """The precision an engine runs with: `requested` checked against the device, or its default."""
    capability = capability_of(device, available)
    if requested is None:
        return default_precision(device, capability)
    return check_precision(device, requested, capability)


@dataclass(frozen=True)
class DevicePolicy:
    """Where a kind of device needs work done differently (MPS lacks some kernels and bf16 casts)."""

    # antialiased bicubic resize runs on the host (MPS has no kernel for it)
    resize_on_host: bool = False
    # tensors leave the device before a bf16 cast (bf16 on MPS needs macOS 14 and is not always there)
    bfloat16_on_host: bool = False
    # torch.compile supported (MPS: no)
    can_compile: bool = True
    precisions: tuple[str, ...] = PRECISIONS

    @classmethod
    def for_device(cls, device: "torch.device | str") -> "DevicePolicy":
        kind = torch.device(device).type
        if kind == "mps":
            return cls(resize_on_host=True, bfloat16_on_host=True, can_compile=False,
                       precisions=("float32", "float16"))
        if kind == "cpu":
            return cls(precisions=("float32", "bfloat16"))
        return cls()


def check_can_compile(device: torch.device) -> None:
    if not DevicePolicy.for_device(device).can_compile:
        raise DeviceError(f"--compile is not supported on {device.type}: run without it")


def compile_mode(device: torch.device) -> str:
    """CUDA graphs and autotuning on CUDA (the official VOS setting); plain inductor elsewhere."""
    return "max-autotune" if device.type == "cuda" else "default"


def set_tf32(enabled: bool) -> None:
    """TF32 matmuls and convolutions on Ampere+ (the official predictor turns them on; parity checks
    against float32 references turn them off)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def enable_mps_fallback() -> None:
    """Ask MPS to run unsupported ops on the CPU. torch reads the variable when it loads, so this only
    helps child processes (Ray actors, a started worker): `samroto` sets it before importing torch."""
    os.environ.setdefault(MPS_FALLBACK_VARIABLE, "1")


def to_host_bfloat16(tensor: torch.Tensor, policy: DevicePolicy) -> torch.Tensor:
    """bf16 copy of a tensor on the host; on MPS the float tensor leaves the device first."""
    if policy.bfloat16_on_host:
        return tensor.float().cpu().to(torch.bfloat16)
    return tensor.to(torch.bfloat16).cpu()


# --- errors the GPU raises ----------------------------------------------------------------------

_STICKY_MARKERS = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
    "uncorrectable ecc",
    "cuda error: unknown error",
    "device not ready",
    "cudaerrorlaunchfailure",
    "an illegal",
    "hardware stack error",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """A device allocation failed; the device stays usable once memory is returned."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    # MPS reports exhaustion as a RuntimeError
    return isinstance(exc, RuntimeError) and "mps backend out of memory" in str(exc).lower()


def is_sticky_device_error(exc: BaseException) -> bool:
    """A CUDA error that poisons the context: every later call fails, so the process must exit."""
    if is_out_of_memory(exc) or not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    if "cuda" not in text and "cublas" not in text and "cudnn" not in text:
        return False
    return any(marker in text for marker in _STICKY_MARKERS)


def release_device_memory(device: "torch.device | str") -> None:
    """Return cached blocks to the driver (after an OOM, or when a session closes)."""
    gc.collect()
    kind = torch.device(device).type
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "empty_cache"):
            mps.empty_cache()


def device_memory(device: "torch.device | str") -> dict[str, int] | None:
    """VRAM of a CUDA device in bytes (allocated, reserved and peak by this process; free and total
    on the device), or None on other devices."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(device)
    return {
        "allocated": int(torch.cuda.memory_allocated(device)),
        "reserved": int(torch.cuda.memory_reserved(device)),
        "peak_allocated": int(torch.cuda.max_memory_allocated(device)),
        "free": int(free),
        "total": int(total),
    }


def all_finite(*tensors: torch.Tensor) -> bool:
    """No inf or NaN in any of the tensors (fp16 overflows show up here first). One device sync."""
    checks = [torch.isfinite(t).all() for t in tensors if t.numel()]
    return bool(torch.stack(checks).all()) if checks else True
