"""The optional torch.compile path computes what eager mode computes (the reduced model, on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samroto.core.model.runtime import autocast_context, compile_image_encoder, compile_memory_attention, is_compiled
from samroto.core.video_session import VideoSession

from ..conftest import FIXTURES, micro_model


def _track(model) -> list[np.ndarray]:  # noqa: ANN001
    frames = np.load(FIXTURES / "video_frames.npy")[:4]
    with VideoSession(model, frames, video_size=(120, 160), fill_hole_area=0) as session:
        session.add_points(0, 1, [[80, 60]], [1])
        return [r.logits for r in session.propagate()]


def test_compiled_image_encoder_and_memory_attention_match_eager() -> None:
    eager = _track(micro_model("sam2.1"))
    model = micro_model("sam2.1")
    compile_image_encoder(model, mode="default")
    compile_memory_attention(model, mode="default")
    compiled = _track(model)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b, a, atol=1e-3)
    assert is_compiled(model)


def test_autocast_choices() -> None:
    cpu = torch.device("cpu")
    with autocast_context(cpu, "float32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast_context(cpu, "bfloat16"):
        assert torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="float16 autocast is not available on cpu"):
        autocast_context(cpu, "float16")


def test_rope_in_place_rotates_like_the_reference_arithmetic() -> None:
    """The in-place complex rotation (memory keys of several frames, pointer tokens excluded) gives
    exactly the cos/sin arithmetic's result; tensors it must not change are rotated into a copy."""
    from samroto.core.model.position_encoding import apply_rope, axial_rope_frequencies

    rotation = axial_rope_frequencies(16, 4, 4)
    cos, sin = rotation.real.contiguous(), rotation.imag.contiguous()
    keys = torch.randn(3, 1, 16 * 3 + 2, 16)
    pairs = keys[:, :, :48].reshape(3, 1, 48, 8, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    c, s = cos.repeat(3, 1), sin.repeat(3, 1)
    expected = torch.stack((real * c - imag * s, real * s + imag * c), dim=-1).flatten(-2)
    pointers = keys[:, :, 48:].clone()
    head = keys[:, :, :48]
    assert apply_rope(head, cos, sin, inplace=True) is head
    assert torch.allclose(keys[:, :, :48], expected, atol=1e-6)
    assert torch.equal(keys[:, :, 48:], pointers)

    trained = torch.randn(1, 1, 16, 16, requires_grad=True)
    before = trained.detach().clone()
    rotated = apply_rope(trained, cos, sin, inplace=True)
    assert rotated is not trained and torch.equal(trained.detach(), before)
    half = torch.randn(1, 1, 16, 16).to(torch.bfloat16)
    assert apply_rope(half, cos, sin, inplace=True).dtype == torch.bfloat16
