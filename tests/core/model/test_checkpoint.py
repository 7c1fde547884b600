"""Loading official-format checkpoints strictly, and clear errors for everything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from samroto.core.model.checkpoint import CheckpointError, build_model, infer_config, load_model
from samroto.core.model.config import load_config_file

from ..conftest import FIXTURES, micro_model


def micro_config(variant: str = "sam2.1"):
    return load_config_file(str(FIXTURES / "micro_config.json"), variant=variant)


def test_official_format_and_plain_state_dict_load_identically(tmp_path: Path) -> None:
    official = torch.load(FIXTURES / "micro_sam2.1.pt", weights_only=True)
    assert set(official) == {"model"}
    plain = tmp_path / "plain.pt"
    torch.save(official["model"], plain)
    a = load_model(FIXTURES / "micro_sam2.1.pt", config=micro_config())
    b = load_model(plain, config=micro_config())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    # stored as float16 in the file, loaded as float32 with the same values
    assert a.no_mem_embed.dtype == torch.float32
    assert torch.equal(a.no_mem_embed, official["model"]["no_mem_embed"].float())


def test_config_inferred_for_every_official_layout(tmp_path: Path) -> None:
    layouts = json.loads((FIXTURES / "layouts.json").read_text())
    for name in layouts:
        meta = build_model(name, device="meta")
        assert infer_config(meta.state_dict()).name == name


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_full_size_checkpoint_round_trip_without_config(tmp_path: Path, name: str) -> None:
    model = build_model(name)
    path = tmp_path / f"{name}.pt"
    torch.save({"model": {k: v.half() for k, v in model.state_dict().items()}}, path)
    loaded = load_model(path)
    assert loaded.config.name == name
    assert torch.equal(loaded.no_mem_embed, model.no_mem_embed.half().float())


def test_wrong_config_names_missing_and_mismatched_tensors() -> None:
    # the SAM 2.0 micro weights lack the 2.1 tensors; the tiny preset has other shapes
    with pytest.raises(CheckpointError) as info:
        load_model(FIXTURES / "micro_sam2.pt", config=micro_config("sam2.1"))
    message = str(info.value)
    assert "missing keys" in message and "no_obj_embed_spatial" in message
    expected = r"wrong shapes: .*image_encoder.trunk.pos_embed: checkpoint \(1, 16, 7, 7\) vs model \(1, 96, 7, 7\)"
    with pytest.raises(CheckpointError, match=expected):
        load_model(FIXTURES / "micro_sam2.1.pt", config="sam2.1_hiera_tiny")


def test_unknown_layout_asks_for_a_config() -> None:
    with pytest.raises(CheckpointError, match="match no official configuration; pass config="):
        load_model(FIXTURES / "micro_sam2.1.pt")


def test_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = torch.load(FIXTURES / "micro_sam2.1.pt", weights_only=True)["model"]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pt"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="unexpected keys: extra.weight"):
        load_model(path, config=micro_config())


def test_truncated_file(tmp_path: Path) -> None:
    data = (FIXTURES / "micro_sam2.1.pt").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path, config=micro_config())


def test_foreign_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(text)
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, other)
    with pytest.raises(CheckpointError, match="not a SAM 2 checkpoint"):
        load_model(other)
    tensors = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tensors)
    with pytest.raises(CheckpointError, match="no image_encoder.trunk.pos_embed"):
        load_model(tensors)
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "absent.pt")


def test_load_to_dtype() -> None:
    model = load_model(FIXTURES / "micro_sam2.1.pt", config=micro_config(), dtype=torch.bfloat16)
    assert model.no_mem_embed.dtype == torch.bfloat16
    assert not model.training


def test_micro_model_helper_is_in_eval_mode() -> None:
    assert not micro_model("sam2").training


def test_unreadable_files_never_advise_unpickling(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes((i * 37 + 11) % 256 for i in range(4096)))
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": Path("an object weights_only refuses")}, pickled)
    for path in (garbage, pickled):
        with pytest.raises(CheckpointError) as raised:
            load_model(path)
        message = str(raised.value)
        assert str(path) in message and "weights_only" not in message and "unsafe" not in message.lower(), message
