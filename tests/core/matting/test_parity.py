"""Our ViTMatte against transformers' VitMatteForImageMatting on random weights, part by part (1e-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samroto.core.matting import MattingModel, load_matting_model

from .reference import TINY, original_layout, random_inputs, reference_model

TOLERANCE = 1e-4
SIZES = [(64, 64), (96, 160), (160, 112)]


@pytest.fixture(scope="module")
def reference():
    return reference_model()


@pytest.fixture(scope="module")
def ours(reference, tmp_path_factory: pytest.TempPathFactory) -> MattingModel:
    path = tmp_path_factory.mktemp("vitmatte") / "pytorch_model.bin"
    torch.save(reference.state_dict(), path)
    return load_matting_model(path)


def _max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("height,width", SIZES)
def test_backbone(reference, ours: MattingModel, height: int, width: int) -> None:
    pixels = random_inputs(height, width, seed=height + width)
    with torch.no_grad():
        expected = reference.backbone(pixels).feature_maps[-1]
        actual = ours.backbone(pixels)
    assert expected.abs().max() > 0.1  # a non-trivial output
    assert _max_error(actual, expected) < TOLERANCE * max(1.0, float(expected.abs().max()))


@pytest.mark.parametrize("height,width", SIZES)
def test_detail_capture(reference, ours: MattingModel, height: int, width: int) -> None:
    pixels = random_inputs(height, width, seed=1)
    with torch.no_grad():
        expected = reference.decoder.convstream(pixels)
        actual = ours.detail_capture(pixels)
    assert len(actual) == len(expected) == 4
    for level, tensor in enumerate(actual):
        assert _max_error(tensor, expected[f"detailed_feature_map_{level}"]) < TOLERANCE


@pytest.mark.parametrize("height,width", SIZES)
def test_fusion_decoder(reference, ours: MattingModel, height: int, width: int) -> None:
    pixels = random_inputs(height, width, seed=2)
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(1, TINY.backbone.hidden_size, height // 16, width // 16, generator=generator)
    with torch.no_grad():
        details = reference.decoder.convstream(pixels)
        hidden = features
        for i, block in enumerate(reference.decoder.fusion_blocks):
            hidden = block(hidden, details[f"detailed_feature_map_{len(reference.decoder.fusion_blocks) - i - 1}"])
        expected = torch.sigmoid(reference.decoder.matting_head(hidden))
        actual = ours.fusion_decoder(features, ours.detail_capture(pixels))
    assert 0.01 < float(expected.std())
    assert _max_error(actual, expected) < TOLERANCE


@pytest.mark.parametrize("height,width,trimap", [
    (64, 64, "mixed"), (96, 160, "mixed"), (96, 160, "unknown"), (160, 112, "foreground"), (160, 112, "background"),
])
def test_whole_model(reference, ours: MattingModel, height: int, width: int, trimap: str) -> None:
    pixels = random_inputs(height, width, seed=4, trimap=trimap)
    with torch.no_grad():
        expected = reference(pixel_values=pixels).alphas
        actual = ours(pixels)
    assert actual.shape == (1, 1, height, width)
    assert _max_error(actual, expected) < TOLERANCE


def test_attention_in_query_chunks_is_the_same(reference, ours: MattingModel) -> None:
    pixels = random_inputs(160, 112, seed=8)
    with torch.no_grad():
        expected = reference(pixel_values=pixels).alphas
        for block in ours.backbone.blocks:
            block.attn.query_chunk = 7  # 70 tokens: ten chunks, the last one short
        try:
            actual = ours(pixels)
        finally:
            for block in ours.backbone.blocks:
                block.attn.query_chunk = 1024
    assert _max_error(actual, expected) < TOLERANCE


def test_batch_of_two(reference, ours: MattingModel) -> None:
    pixels = torch.cat([random_inputs(64, 96, seed=5), random_inputs(64, 96, seed=6)])
    with torch.no_grad():
        assert _max_error(ours(pixels), reference(pixel_values=pixels).alphas) < TOLERANCE


def test_every_layout_loads_the_same_weights(reference, ours: MattingModel, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    hf = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(hf, str(tmp_path / "model.safetensors"))
    torch.save({"model": original_layout(hf), "iteration": 1}, tmp_path / "ViTMatte_S_Com.pth")
    torch.save(ours.state_dict(), tmp_path / "ours.pt")
    pixels = random_inputs(96, 96, seed=7)
    with torch.no_grad():
        expected = ours(pixels)
        for name in ("model.safetensors", "ViTMatte_S_Com.pth", "ours.pt"):
            model = load_matting_model(tmp_path / name)
            assert model.config.backbone == TINY.backbone, name
            assert torch.equal(model(pixels), expected), name
