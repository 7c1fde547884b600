"""Colour: plates reach the model through OpenColorIO's display and view, as the host shows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
import PyOpenColorIO as ocio
import pytest

from samroto.core.colour import (
    ColourError,
    ColourSettings,
    ViewTransform,
    chromaticities_colorspace,
    load_config,
    resolve_colour,
)
from samroto.core.frames import FrameError, open_frames, read_image

BUILT_IN = "ocio://studio-config-latest"
HEIGHT, WIDTH = 24, 32
AP1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)


def acescg_plate(index: int = 0) -> np.ndarray:
    """Scene-linear ACEScg pixels: shadows to highlights well above 1, a negative, saturated primaries."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    rgb = np.stack([x / WIDTH * 4.0, y / HEIGHT * 1.5, (x + y + index) / (WIDTH + HEIGHT) * 0.3], axis=-1)
    rgb[0, 0] = (-0.02, 0.001, 0.0)
    rgb[1, 1] = (16.0, 0.0, 0.0)
    return rgb.astype(np.float32)


def write_exr(path: Path, rgb: np.ndarray, **header: Any) -> None:
    channels = {name: np.ascontiguousarray(rgb[..., i]) for i, name in enumerate("RGB")}
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, **header}, channels).write(str(path))


def ocio_view(rgb: np.ndarray, colorspace: str, display: str, view: str, config: str = BUILT_IN) -> np.ndarray:
    """OCIO's own processor on the pixels: the expected model input."""
    cfg = ocio.Config.CreateFromFile(config)
    processor = cfg.getProcessor(colorspace, display, view, ocio.TRANSFORM_DIR_FORWARD).getDefaultCPUProcessor()
    out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
    processor.applyRGB(out)
    return np.clip(out, 0.0, 1.0)


PAIRS = [
    ("sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)"),
    ("Display P3 - Display", "Un-tone-mapped"),
]


@pytest.mark.parametrize(("display", "view"), PAIRS)
def test_acescg_exr_reaches_the_model_as_ocio_shows_it(tmp_path: Path, display: str, view: str, monkeypatch) -> None:
    import samroto.core.video_session as video_session
    from tests.core.conftest import micro_model

    for frame in (1001, 1002):
        write_exr(tmp_path / f"plate.{frame}.exr", acescg_plate(frame), chromaticities=AP1)
    settings = ColourSettings(config=BUILT_IN, display=display, view=view)
    frames = open_frames(tmp_path / "plate.####.exr", colour=settings)
    assert frames.colour.settings.colorspace == "ACEScg" and frames.colour.origin == "header chromaticities"

    fed: list[np.ndarray] = []
    original = video_session.host_pixels  # where a read frame enters the model's preprocessing

    def recording(image: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        fed.append(np.array(image))
        return original(image, *args, **kwargs)

    monkeypatch.setattr(video_session, "host_pixels", recording)
    with video_session.VideoSession(micro_model("sam2.1"), frames) as session:
        session.add_points(1002, obj_id=1, points=[(10, 10)], labels=[1])
    assert fed, "the session never prepared a model input"
    expected = ocio_view(acescg_plate(1002), "ACEScg", display, view)
    assert fed[-1].dtype == np.float32
    np.testing.assert_allclose(fed[-1], expected, atol=1e-5, rtol=0)
    # the view matters: the other pair gives another picture
    other = next(pair for pair in PAIRS if pair != (display, view))
    assert np.abs(ocio_view(acescg_plate(1002), "ACEScg", *other) - expected).max() > 0.02


def test_colourspace_from_header_flag_and_defaults(tmp_path: Path) -> None:
    plate = acescg_plate()
    write_exr(tmp_path / "named.exr", plate, colorSpace="ACES2065-1")
    write_exr(tmp_path / "aces.exr", plate, acesImageContainerFlag=1)
    write_exr(tmp_path / "bare.exr", plate)
    display, view = PAIRS[0]
    named = read_image(tmp_path / "named.exr", view=ColourSettings(config=BUILT_IN))
    np.testing.assert_allclose(named, ocio_view(plate, "ACES2065-1", display, view), atol=1e-5, rtol=0)
    container = read_image(tmp_path / "aces.exr", view=ColourSettings(config=BUILT_IN))
    np.testing.assert_array_equal(container, named)
    # no header: the config's scene_linear role (ACEScg in the ACES configs), as Nuke assumes of floats
    bare = open_frames(tmp_path / "bare.exr", colour={"config": BUILT_IN})
    assert bare.colour.settings.colorspace == "ACEScg" and bare.colour.origin == "scene_linear role"
    # an explicit colourspace (flag or host) wins over the header
    flagged = open_frames(tmp_path / "named.exr", colour={"config": BUILT_IN, "colorspace": "lin_rec709_scene"})
    assert flagged.colour.settings.colorspace == "Linear Rec.709 (sRGB)"
    np.testing.assert_allclose(
        flagged.read(0), ocio_view(plate, "Linear Rec.709 (sRGB)", display, view), atol=1e-5, rtol=0
    )
    # the description names every choice and reopens the same conversion; "latest" is pinned
    spec = flagged.describe()
    assert spec["colour"]["config"].startswith("ocio://studio-config-v") and spec["colour"]["view"] == view
    np.testing.assert_array_equal(open_frames(spec).read(0), flagged.read(0))


def test_integer_plates_pass_unless_a_colourspace_is_named(tmp_path: Path) -> None:
    import cv2

    pixels = (np.arange(HEIGHT * WIDTH * 3).reshape(HEIGHT, WIDTH, 3) % 251).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "still.png"), pixels[..., ::-1])
    untouched = read_image(tmp_path / "still.png")
    assert untouched.dtype == np.uint8 and np.array_equal(untouched, pixels)
    # a log scan named as such goes through the view like any other plate
    log = read_image(tmp_path / "still.png", view=ColourSettings(config=BUILT_IN, colorspace="ACEScct"))
    expected = ocio_view(pixels.astype(np.float32) / 255.0, "ACEScct", *PAIRS[0])
    assert log.dtype == np.float32
    np.testing.assert_allclose(log, expected, atol=1e-5, rtol=0)


def test_curves_remain_as_named_choices_without_a_config(tmp_path: Path) -> None:
    plate = np.clip(acescg_plate(), 0, None)
    write_exr(tmp_path / "plate.exr", plate)
    for curve in ("srgb", "rec709", "linear"):
        got = read_image(tmp_path / "plate.exr", view=ColourSettings(config="none", view=curve))
        np.testing.assert_array_equal(got, ViewTransform(curve).apply(plate))  # type: ignore[arg-type]
    # the older {"curve", "exposure"} form means the same
    assert ColourSettings.from_dict({"curve": "rec709", "exposure": 1.0}) == ColourSettings("none", view="rec709",
                                                                                          exposure=1.0)
    with pytest.raises(ColourError, match="curve, one of"):
        ColourSettings(config="none", view="ACES 2.0 - SDR 100 nits (Rec.709)")
    with pytest.raises(ColourError, match="exposure applies to the curves only"):
        ColourSettings(exposure=1.0)


def test_settings_merge_over_defaults() -> None:
    worker = ColourSettings(config=BUILT_IN, display="sRGB - Display", view="Un-tone-mapped")
    host = ColourSettings(colorspace="ACEScg", view="Raw")
    merged = host.merged_over(worker)
    assert merged == ColourSettings(config=BUILT_IN, colorspace="ACEScg", display="sRGB - Display", view="Raw")
    # names from another config do not mix with this one's
    other = ColourSettings(config="/studio/config.ocio", colorspace="plate_log")
    assert other.merged_over(worker) == other
    assert ColourSettings.from_dict(merged.to_dict()) == merged


def test_environment_config_is_the_default(tmp_path: Path, monkeypatch) -> None:
    config_file = tmp_path / "studio.ocio"
    ocio.Config.CreateFromFile("ocio://cg-config-latest").serialize(str(config_file))
    monkeypatch.setenv("OCIO", str(config_file))
    loaded = load_config()
    assert loaded.origin == "$OCIO" and loaded.source == str(config_file)
    monkeypatch.delenv("OCIO")
    assert load_config().origin == "built-in default"


def test_bad_colour_input_gets_clear_messages(tmp_path: Path, monkeypatch) -> None:
    plate = acescg_plate()
    write_exr(tmp_path / "plate.exr", plate)
    # an unknown colourspace lists the config's names
    with pytest.raises(FrameError, match="'ACEScgg' is not in OCIO config .*it has: .*ACES2065-1, .*ACEScg"):
        read_image(tmp_path / "plate.exr", view=ColourSettings(config=BUILT_IN, colorspace="ACEScgg"))
    with pytest.raises(ColourError, match="display 'Cinema' is not .*it has: sRGB - Display"):
        resolve_colour(ColourSettings(config=BUILT_IN, display="Cinema"), float_pixels=True)
    with pytest.raises(ColourError, match="view 'Filmic' is not a view of display 'sRGB - Display'.*Un-tone-mapped"):
        resolve_colour(ColourSettings(config=BUILT_IN, view="Filmic"), float_pixels=True)
    # a missing or broken config says where it looked and what failed
    monkeypatch.setenv("OCIO", str(tmp_path / "nowhere.ocio"))
    with pytest.raises(FrameError, match=r"nowhere\.ocio' \(\$OCIO\): no such file"):
        read_image(tmp_path / "plate.exr")
    broken = tmp_path / "broken.ocio"
    broken.write_text("ocio_profile_version: 2\nroles: {scene_linear: [\n")
    with pytest.raises(ColourError, match=r"broken\.ocio' \(given\) cannot be used: .*yaml"):
        load_config(str(broken))
    with pytest.raises(ColourError, match="built-in configs: .*ocio://cg-config-latest"):
        load_config("ocio://nope-config")
    monkeypatch.delenv("OCIO")
    # a header naming a colourspace the config lacks: no silent guess
    write_exr(tmp_path / "odd.exr", plate, colorSpace="plate_log_v3")
    with pytest.raises(FrameError, match="header names colourspace 'plate_log_v3' .*pass the plate's colourspace"):
        open_frames(tmp_path / "odd.exr", colour={"config": BUILT_IN})
    write_exr(tmp_path / "primaries.exr", plate, chromaticities=(0.7, 0.3, 0.2, 0.7, 0.15, 0.05, 0.31, 0.33))
    with pytest.raises(FrameError, match="chromaticities .* match no colourspace"):
        open_frames(tmp_path / "primaries.exr", colour={"config": BUILT_IN})


def test_chromaticities_identify_linear_spaces() -> None:
    assert chromaticities_colorspace(AP1) == "lin_ap1_scene"
    rec709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
    assert chromaticities_colorspace(rec709) == "lin_rec709_scene"
    assert chromaticities_colorspace((0.0,) * 8) is None


def test_multi_layer_and_multi_part_exr(tmp_path: Path) -> None:
    plate = np.clip(acescg_plate(), 0, 1)
    half = np.full((HEIGHT, WIDTH), 0.5, np.float32)
    layered = {f"beauty.{c}": np.ascontiguousarray(plate[..., i]) for i, c in enumerate("RGB")}
    layered.update({"depth.Z": half})
    OpenEXR.File({}, layered).write(str(tmp_path / "layers.exr"))
    curve = ColourSettings(config="none", view="linear")
    np.testing.assert_array_equal(read_image(tmp_path / "layers.exr", view=curve), plate)
    parts = [
        OpenEXR.Part({"type": OpenEXR.scanlineimage}, {"Z": half}, name="depth"),
        OpenEXR.Part({"type": OpenEXR.scanlineimage},
                     {c: np.ascontiguousarray(plate[..., i]) for i, c in enumerate("RGB")}, name="rgba"),
    ]
    OpenEXR.File(parts).write(str(tmp_path / "parts.exr"))
    np.testing.assert_array_equal(read_image(tmp_path / "parts.exr", view=curve), plate)


@pytest.mark.parametrize("bits", [10, 12])
def test_deep_tiff_and_dpx_read_as_openimageio_reads_them(tmp_path: Path, bits: int) -> None:
    import OpenImageIO as oiio

    rng = np.random.default_rng(bits)
    pixels = rng.integers(0, 65536, size=(HEIGHT, WIDTH, 3), dtype=np.uint16)
    for extension in ("tif", "dpx"):
        path = str(tmp_path / f"scan{bits}.{extension}")
        spec = oiio.ImageSpec(WIDTH, HEIGHT, 3, "uint16")
        spec.attribute("oiio:BitsPerSample", bits)
        output = oiio.ImageOutput.create(path)
        assert output.open(path, spec) and output.write_image(pixels) and output.close()
        image_input = oiio.ImageInput.open(path)
        reference = image_input.read_image(0, 0, 0, 3, "uint16")
        image_input.close()
        got = read_image(path)  # display-referred integers: passed as stored, scaled to 16 bits
        assert got.dtype == np.uint16 and np.array_equal(got, reference), extension
        assert len(np.unique(got)) > 100 and (np.unique(got % (1 << (16 - bits))).size > 1 or bits == 16)
