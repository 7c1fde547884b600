"""Loading ViTMatte checkpoints: config read from the tensors, one clear error for a wrong file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samroto.core.matting import (MattingCheckpointError, MattingModel, infer_config, load_matting_model,
                                  matting_preset)

from .reference import TINY


def test_presets_match_the_official_architectures() -> None:
    small, base = matting_preset("vitmatte-small"), matting_preset("vitmatte-base-composition-1k")
    assert (small.backbone.hidden_size, small.backbone.num_heads) == (384, 6)
    assert (base.backbone.hidden_size, base.backbone.num_heads) == (768, 12)
    # read back from an official-shaped state dict (meta tensors: no memory)
    with torch.device("meta"):
        state = MattingModel(base).state_dict()
    assert infer_config(state).backbone == base.backbone


def _save_tiny(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(MattingModel(TINY).state_dict(), path)
    return path


def test_preset_of_another_size_is_refused(tmp_path: Path) -> None:
    path = _save_tiny(tmp_path / "tiny.pt")
    with pytest.raises(MattingCheckpointError, match="not vitmatte-small"):
        load_matting_model(path, config="vitmatte-small")


@pytest.mark.parametrize("content,message", [
    ({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(1)}, "SAM 2 checkpoint"),
    ({"layer.weight": torch.zeros(1)}, "not a ViTMatte checkpoint"),
])
def test_wrong_checkpoint_gets_one_clear_error(tmp_path: Path, content: dict, message: str) -> None:
    torch.save(content, tmp_path / "wrong.pt")
    with pytest.raises(MattingCheckpointError, match=message):
        load_matting_model(tmp_path / "wrong.pt")


def test_truncated_and_incomplete_files(tmp_path: Path) -> None:
    path = _save_tiny(tmp_path / "tiny.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(MattingCheckpointError, match="truncated or corrupt"):
        load_matting_model(tmp_path / "cut.pt")
    state = torch.load(path)
    del state["fusion_decoder.head.conv2.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(MattingCheckpointError, match=r"missing: fusion_decoder.head.conv2.weight.*unexpected: extra"):
        load_matting_model(tmp_path / "partial.pt")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(MattingCheckpointError, match="truncated safetensors"):
        load_matting_model(tmp_path / "cut.safetensors")
    with pytest.raises(MattingCheckpointError, match="no such file"):
        load_matting_model(tmp_path / "absent.pt")
