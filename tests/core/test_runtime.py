"""The optional torch.compile path computes what eager mode computes (the reduced model, on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samroto.core.runtime import autocast_context, compile_image_encoder, compile_memory_attention
from samroto.core.video_session import VideoSession

from .conftest import FIXTURES, micro_model


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
    assert getattr(model.image_encoder.forward, "_torchdynamo_orig_callable", None) is not None, "compiled"


def test_autocast_choices() -> None:
    cpu = torch.device("cpu")
    with autocast_context(cpu, "float32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast_context(cpu, "bfloat16"):
        assert torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="float16 autocast is not available on cpu"):
        autocast_context(cpu, "float16")
