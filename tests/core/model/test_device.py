"""Device and precision rules, with what torch sees injected: no GPU needed to check them."""

from __future__ import annotations

import pytest
import torch

from samroto.core.model.device import (
    Accelerators,
    DeviceError,
    DevicePolicy,
    all_finite,
    check_can_compile,
    choose_precision,
    compile_mode,
    default_precision,
    is_out_of_memory,
    is_sticky_device_error,
    resolve_device,
    to_host_bfloat16,
)

NOTHING = Accelerators()
MAC = Accelerators(mps=True)
TWO_GPUS = Accelerators(cuda_count=2, capabilities=((8, 0), (7, 5)), names=("A100", "T4"))


@pytest.mark.parametrize(
    ("seen", "expected"),
    [(NOTHING, "cpu"), (MAC, "mps"), (TWO_GPUS, "cuda:0"), (Accelerators(cuda_count=1, mps=True), "cuda:0")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(seen: Accelerators, expected: str) -> None:
    assert resolve_device("auto", seen) == torch.device(expected)
    assert resolve_device(None, seen) == torch.device(expected)


def test_named_devices_are_checked_against_the_machine() -> None:
    assert resolve_device("cuda", TWO_GPUS) == torch.device("cuda", 0)
    assert resolve_device("CUDA:1", TWO_GPUS) == torch.device("cuda", 1)
    assert resolve_device("cpu", TWO_GPUS) == torch.device("cpu")
    with pytest.raises(DeviceError, match="no CUDA device 2; torch sees 2 .*A100.*T4"):
        resolve_device("cuda:2", TWO_GPUS)
    with pytest.raises(DeviceError, match="torch sees no CUDA device .*this machine has: mps, cpu"):
        resolve_device("cuda:0", MAC)
    with pytest.raises(DeviceError, match="Metal backend is not available"):
        resolve_device("mps", TWO_GPUS)
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        resolve_device("gpu0", TWO_GPUS)


def test_precision_follows_compute_capability() -> None:
    cuda = torch.device("cuda", 0)
    assert default_precision(cuda, (9, 0)) == "bfloat16"
    assert default_precision(cuda, (8, 6)) == "bfloat16"
    assert default_precision(cuda, (7, 5)) == "float16"  # Turing
    assert default_precision(cuda, (7, 0)) == "float16"  # Volta
    assert default_precision(cuda, (6, 1)) == "float32"  # Pascal
    assert default_precision(torch.device("mps"), None) == "float32"
    assert default_precision(torch.device("cpu"), None) == "float32"
    assert choose_precision(torch.device("cuda", 1), None, TWO_GPUS) == "float16"
    assert choose_precision(torch.device("cuda", 0), None, TWO_GPUS) == "bfloat16"
    with pytest.raises(DeviceError, match="bfloat16 needs an Ampere .* this one is 7.5"):
        choose_precision(torch.device("cuda", 1), "bfloat16", TWO_GPUS)
    with pytest.raises(DeviceError, match="mps runs float32 or float16, not bfloat16"):
        choose_precision(torch.device("mps"), "bfloat16", MAC)
    with pytest.raises(DeviceError, match="cpu runs float32 or bfloat16, not float16"):
        choose_precision(torch.device("cpu"), "float16", NOTHING)
    with pytest.raises(DeviceError, match="precision must be one of"):
        choose_precision(torch.device("cpu"), "fp8", NOTHING)


def test_mps_policy_and_compile() -> None:
    mps = DevicePolicy.for_device("mps")
    assert mps.resize_on_host and mps.bfloat16_on_host and not mps.can_compile
    assert not DevicePolicy.for_device("cuda").resize_on_host
    with pytest.raises(DeviceError, match="--compile is not supported on mps"):
        check_can_compile(torch.device("mps"))
    check_can_compile(torch.device("cpu"))
    assert compile_mode(torch.device("cuda", 0)) == "max-autotune"
    assert compile_mode(torch.device("cpu")) == "default"
    # the MPS path (float to the host, then bf16) gives the same bits as the direct cast
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(to_host_bfloat16(x, mps), to_host_bfloat16(x, DevicePolicy.for_device("cpu")))
    assert to_host_bfloat16(x, mps).dtype == torch.bfloat16


def test_gpu_errors_are_sorted() -> None:
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(oom) and not is_sticky_device_error(oom)
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    sticky = RuntimeError("CUDA error: an illegal memory access was encountered")
    assert is_sticky_device_error(sticky) and not is_out_of_memory(sticky)
    assert is_sticky_device_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_sticky_device_error(RuntimeError("shape mismatch"))
    assert not is_sticky_device_error(ValueError("CUDA error: an illegal memory access"))


def test_all_finite() -> None:
    assert all_finite(torch.zeros(3), torch.ones(2, 2))
    assert not all_finite(torch.zeros(3), torch.tensor([1.0, float("inf")]))
    assert not all_finite(torch.tensor([float("nan")]))
    assert all_finite()


def test_a_precision_that_overflows_falls_back_to_float32() -> None:
    from samroto.core.model.runtime import finite_precision

    from ..conftest import micro_model

    model = micro_model("sam2")
    assert finite_precision(model, "bfloat16") == "bfloat16"
    assert finite_precision(model, "float32") == "float32"
    notes: list[str] = []
    with torch.no_grad():  # a trunk weight beyond bf16's range: the features overflow under autocast
        model.image_encoder.neck.convs[0].conv.weight.mul_(1e38)
    assert finite_precision(model, "bfloat16", log=notes.append) == "float32"
    assert "bfloat16 overflows on cpu" in notes[0]
