"""Every official configuration builds with exactly the reference's state-dict keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch

from samroto.core.model.checkpoint import build_model
from samroto.core.model.config import PRESETS, config_from_reference_dict, preset

from ..conftest import FIXTURES

LAYOUTS = json.loads((FIXTURES / "layouts.json").read_text())


def test_all_eight_presets_are_covered() -> None:
    assert sorted(PRESETS) == sorted(LAYOUTS)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_state_dict_matches_reference_layout(name: str) -> None:
    model = build_model(name, device="meta")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    reference = LAYOUTS[name]["state_dict"]
    assert sorted(set(reference) - set(ours)) == [], "keys missing from our model"
    assert sorted(set(ours) - set(reference)) == [], "keys our model has but the reference does not"
    wrong = {k: (ours[k], reference[k]) for k in reference if ours[k] != reference[k]}
    assert wrong == {}
    assert sum(v.numel() for v in model.state_dict().values()) == LAYOUTS[name]["num_params"]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_reference_dict_reads_as_the_preset(name: str) -> None:
    assert config_from_reference_dict(LAYOUTS[name]["config"], name=name) == preset(name)


def test_meta_build_allocates_nothing() -> None:
    model = build_model("sam2.1_hiera_large", device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert all(b.device.type == "meta" for b in model.buffers())


def test_build_accepts_dataclass_and_dict_and_dtype() -> None:
    config = preset("sam2_hiera_tiny")
    assert build_model(config, device="meta").config == config
    assert build_model(config.to_dict(), device="meta").config == config
    model = build_model("sam2.1_hiera_tiny", device="meta", dtype=torch.bfloat16)
    assert model.no_mem_embed.dtype == torch.bfloat16


def test_preset_aliases_and_unknown_names() -> None:
    assert preset("sam2.1_hiera_b+").name == "sam2.1_hiera_base_plus"
    assert preset("sam2_hiera_t.pt").name == "sam2_hiera_tiny"
    with pytest.raises(ValueError, match="unknown model 'sam3_hiera_tiny'"):
        preset("sam3_hiera_tiny")
