"""Device and precision helpers: autocast contexts and optional torch.compile of the heavy parts."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
from typing import Callable, ContextManager

import torch

from .sam2 import SAM2Model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_context(device: torch.device, dtype: "str | torch.dtype | None") -> ContextManager[object]:
    """bf16/fp16 autocast (as the reference runs on CUDA); float32 (or None) runs without autocast.

    On the CPU, bfloat16 autocast is honoured too (slower there, but the same dtype plumbing as on a
    GPU, which lets the tests exercise it); float16 is CUDA-only.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, not {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and dtype == torch.bfloat16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    raise ValueError(f"{dtype} autocast is not available on {device.type}; use float32")


def compile_image_encoder(model: SAM2Model, *, mode: str = "max-autotune") -> None:
    """Compile the image encoder's forward (the module keeps its parameters, so checkpoints still load)."""
    model.image_encoder.forward = torch.compile(  # type: ignore[method-assign]
        model.image_encoder.forward, mode=mode, fullgraph=True, dynamic=False
    )


def compile_memory_attention(model: SAM2Model, *, mode: str = "max-autotune") -> None:
    """Compile memory attention; dynamic shapes because the number of memories varies."""
    model.memory_attention.forward = torch.compile(  # type: ignore[method-assign]
        model.memory_attention.forward, mode=mode, fullgraph=False, dynamic=True
    )


def release_free_memory() -> None:
    """Hand the heap's free pages back to the operating system (glibc only; a no-op elsewhere).

    Tensors of a few tens of MB are allocated and freed every frame; glibc serves them from its
    heap and keeps the freed, fragmented blocks resident, so RSS creeps up over a long shot.
    `malloc_trim` returns them (a few milliseconds), which keeps memory flat.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once; None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):
        return None
