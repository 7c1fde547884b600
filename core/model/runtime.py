"""Device and precision helpers: autocast contexts and optional torch.compile of the heavy parts."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
from typing import Any, Callable, ContextManager, Sequence

import torch

from .attention import RoPEAttention
from .device import all_finite, check_can_compile, compile_mode
from .image_encoder import BackboneOutput
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
    if device.type == "mps" and dtype == torch.float16:
        return torch.autocast("mps", dtype=torch.float16)  # MPS: float16 only (DevicePolicy)
    raise ValueError(f"{dtype} autocast is not available on {device.type}; use float32")


Compiler = Callable[..., Callable[..., Any]]


def compile_image_encoder(model: SAM2Model, *, mode: str = "max-autotune", compiler: Compiler | None = None) -> None:
    """Compile the image encoder's forward (the module keeps its parameters, so checkpoints still load).

    Under CUDA graphs ("max-autotune" on CUDA) a compiled call's outputs live in buffers that the next
    replay overwrites, and a frame's features are read after memory attention has run (and kept in
    the feature cache): so the outputs are cloned, as the official VOS predictor does, and the
    position caches are filled eagerly first (a tensor cached while tracing would be a graph output).
    """
    warm_position_caches(model)
    compiled = (compiler or torch.compile)(model.image_encoder.forward, mode=mode, fullgraph=True, dynamic=False)

    def forward(images: torch.Tensor) -> BackboneOutput:
        out = compiled(images)
        return BackboneOutput(fpn=[t.clone() for t in out.fpn], positions=[t.clone() for t in out.positions])

    forward.compiled = compiled  # type: ignore[attr-defined]
    model.image_encoder.forward = forward  # type: ignore[method-assign]


def compile_memory_attention(
    model: SAM2Model, *, mode: str = "max-autotune", compiler: Compiler | None = None
) -> None:
    """Compile memory attention; dynamic shapes because the number of memories varies. Its output is
    cloned (it is kept in the memory-conditioned cache across later compiled calls)."""
    warm_position_caches(model)
    compiled = (compiler or torch.compile)(model.memory_attention.forward, mode=mode, fullgraph=False, dynamic=True)

    def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
        return compiled(*args, **kwargs).clone()

    forward.compiled = compiled  # type: ignore[attr-defined]
    model.memory_attention.forward = forward  # type: ignore[method-assign]


def is_compiled(model: SAM2Model) -> bool:
    return hasattr(model.image_encoder.forward, "compiled")


def compile_model(model: SAM2Model, *, compiler: Compiler | None = None) -> None:
    """Compile the image encoder and memory attention the way the device wants (CUDA graphs and
    autotuning on CUDA, plain inductor elsewhere); a clear DeviceError on MPS. Compilation itself
    happens on the first calls: `warm_up` makes them at start-up instead of on the first click."""
    check_can_compile(model.device)
    if is_compiled(model):
        return
    mode = compile_mode(model.device)
    compile_image_encoder(model, mode=mode, compiler=compiler)
    compile_memory_attention(model, mode=mode, compiler=compiler)


def warm_position_caches(model: SAM2Model, image_sizes: Sequence[int] = ()) -> None:
    """Fill every size-keyed cache (sine encodings of the neck and memory maps, RoPE tables) eagerly
    for the model's size and `image_sizes`, so no compiled graph ever creates a cached tensor."""
    device = model.device
    for size in {model.image_size, *image_sizes}:
        config = model.config.with_image_size(size) if size != model.image_size else model.config
        s = config.feature_size
        for level in range(len(model.image_encoder.neck.convs)):  # strides 4, 8, 16, 32 of the input
            side = size // (4 * 2**level)
            model.image_encoder.neck.position_encoding.encode(side, side, device)
        model.memory_encoder.position_encoding.encode(s, s, device)
        for module in model.memory_attention.modules():
            if isinstance(module, RoPEAttention):
                module.rotations(s * s, device)


def warm_up(
    model: SAM2Model,
    *,
    precision: str = "float32",
    image_sizes: Sequence[int] = (),
    progress: Callable[[str], None] | None = None,
) -> None:
    """Run every compiled path once per size (first prompt, tracking with a short and a full memory
    bank, one and two objects), so compilation happens now and not on the artist's first click.
    Cheap without compile (a few model calls); minutes with it on CUDA."""
    sizes = [model.image_size, *(s for s in image_sizes if s != model.image_size)]
    warm_position_caches(model, sizes)
    c = model.config
    for size in sizes:
        view = model.at_image_size(size)
        if progress is not None:
            progress(f"warming up at {size}x{size}")
        with torch.inference_mode(), autocast_context(model.device, precision):
            image = torch.zeros(1, 3, size, size, device=model.device, dtype=model.dtype)
            features = view.encode_image(image)
            pix = view.condition_on_memory(features, None, None, 0)
            point = (torch.full((1, 1, 2), size / 2, device=model.device), torch.ones(1, 1, dtype=torch.int32,
                                                                                     device=model.device))
            heads = view.predict_masks(pix, features.high_res, points=point, multimask=True)
            memory = view.encode_memory(features.vision, heads.highres, heads.object_score, binarize=True)
            for objects, memories, pointers in ((1, 1, 1), (2, c.num_maskmem, c.max_obj_ptrs_in_encoder)):
                spatial = [(memory.expand(objects, -1, -1, -1), t % c.num_maskmem) for t in range(memories)]
                ptrs = [(t, heads.obj_ptr.expand(objects, -1)) for t in range(pointers)]
                bank, bank_pos, num_ptr = view.assemble_memory(spatial, ptrs, 100)
                batch = features.expand(objects)
                pix = view.condition_on_memory(batch, bank, bank_pos, num_ptr)
                tracked = view.predict_masks(pix, batch.high_res, points=None, multimask=True)
                view.encode_memory(batch.vision, tracked.highres, tracked.object_score, binarize=False)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)


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


def finite_precision(model: SAM2Model, precision: str, *, log: Callable[[str], None] | None = None) -> str:
    """`precision` if the image encoder stays finite under it on a test image, else float32 (fp16 on
    pre-Ampere GPUs can overflow in the trunk: inf/NaN masks on every frame otherwise)."""
    if precision == "float32":
        return precision
    size = model.image_size
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, size, size, generator=generator) * 4 - 2).to(model.device)
    with torch.inference_mode(), autocast_context(model.device, precision):
        features = model.encode_image(image)
        finite = all_finite(features.vision, *features.high_res)
    if finite:
        return precision
    if log is not None:
        log(f"{precision} overflows on {model.device} (inf/NaN in the image features): using float32")
    return "float32"
