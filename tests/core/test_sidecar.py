"""Prompt sidecars: the format's validation, mask RLE, and export from a session then replay onto a new
one (with the micro model) giving the same outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samroto.bridge import preview
from samroto.core.model.checkpoint import load_model
from samroto.core.model.config import load_config_file
from samroto.core.model.sam2 import SAM2Model
from samroto.core.sidecar import (
    SIDECAR_VERSION,
    Sidecar,
    SidecarError,
    apply_prompts,
    decode_mask_rle,
    encode_mask_rle,
    load_sidecar,
    save_sidecar,
    session_to_sidecar,
)
from samroto.core.video_session import VideoSession

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sam2_reference"


@pytest.fixture(scope="module")
def model() -> SAM2Model:
    return load_model(FIXTURES / "micro_sam2.1.pt", config=load_config_file(f"{FIXTURES / 'micro_config.json'}#sam2.1"))


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("plate")
    rng = np.random.default_rng(5)
    background = rng.integers(0, 60, size=(90, 120, 3), dtype=np.uint8)
    for i in range(6):
        frame = background.copy()
        cv2.circle(frame, (30 + 8 * i, 45), 15, (230, 200, 40), -1)
        cv2.imwrite(str(folder / f"plate.{101 + i:04d}.png"), frame)
    return str(folder / "plate.####.png")


def minimal(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": "samroto.sidecar",
        "version": 1,
        "shot": {"plate": "plates/shot.####.png"},
        "objects": [{"obj_id": 1, "prompts": [{"frame": 1, "points": [[3, 4]], "labels": [1]}]}],
    }
    data.update(changes)
    return data


# --- masks -------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_mask_rle_round_trips_and_matches_the_worker_previews(mask: np.ndarray) -> None:
    rle = encode_mask_rle(mask)
    np.testing.assert_array_equal(decode_mask_rle(rle), mask)
    assert rle == preview.encode(mask)  # one encoding across the project: hosts reuse their decoder
    assert sum(rle["counts"]) == mask.size


def test_mask_rle_errors_name_the_field() -> None:
    with pytest.raises(SidecarError, match=r"m\.counts: the runs cover 5 pixels, height\*width is 6"):
        decode_mask_rle({"height": 2, "width": 3, "counts": [2, 3]}, where="m")
    with pytest.raises(SidecarError, match=r"m\.counts: run lengths cannot be negative"):
        decode_mask_rle({"height": 1, "width": 1, "counts": [2, -1]}, where="m")
    with pytest.raises(SidecarError, match=r"m\.height: expected an integer >= 1"):
        decode_mask_rle({"height": 0, "width": 3, "counts": []}, where="m")


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("version"), r"version: expected a positive integer, got None"),
        (lambda d: d.update(version=SIDECAR_VERSION + 1), r"version: the file is version 2, written by a newer"),
        (lambda d: d.update(format="other"), r"format: expected 'samroto.sidecar'"),
        (lambda d: d.update(extra=1), r"extra: unknown field"),
        (lambda d: d["shot"].pop("plate"), r"shot\.plate: expected a video file"),
        (lambda d: d["shot"].update(first=10, last=2), r"shot\.first 10 is after shot\.last 2"),
        (lambda d: d["shot"].update(view={"curve": "log"}), r"shot\.view\.curve"),
        (lambda d: d["shot"].update(colour={"look": "warm"}), r"shot\.colour: unknown colour settings \['look'\]"),
        (lambda d: d["shot"].update(colour={"config": "none", "colorspace": "ACEScg"}),
         r"shot\.colour: without an OCIO config .* no colourspace"),
        (lambda d: d.update(objects=[]), r"objects: expected a non-empty list"),
        (lambda d: d["objects"].append(d["objects"][0]), r"objects\[1\]\.obj_id: object 1 appears twice"),
        (lambda d: d["objects"][0].update(name="a/b"), r"objects\[0\]\.name: 'a/b' cannot be used in a file name"),
        (lambda d: d["objects"][0]["prompts"][0].update(labels=[1, 0]), r"prompts\[0\]\.labels: expected 1 labels"),
        (lambda d: d["objects"][0]["prompts"][0].update(points=[[1, "x"]]), r"prompts\[0\]\.points\[0\]"),
        (lambda d: d["objects"][0]["prompts"][0].update(frame=1.5), r"prompts\[0\]\.frame: expected an integer"),
        (lambda d: d["objects"][0]["prompts"][0].pop("labels"), r"prompts\[0\]: points and labels go together"),
        (lambda d: d["objects"][0]["prompts"][0].update(box=[5, 5, 1, 1]), r"prompts\[0\]\.box: corners must be"),
        (lambda d: d["objects"][0]["prompts"].append({"frame": 1, "box": [0, 0, 2, 2]}),
         r"prompts: frame 1 has more than one prompt entry"),
        (lambda d: d["objects"][0]["prompts"].append({"frame": 2}), r"prompts\[1\]: a prompt needs points"),
        (lambda d: d["objects"][0]["prompts"][0].update(mask={"height": 1, "width": 1, "counts": [1]}),
         r"prompts\[0\]: a mask prompt stands alone"),
        (lambda d: d.update(model={"checkpoint": ""}), r"model\.checkpoint: expected"),
        (lambda d: d.update(session={"fill_hole_area": -1}), r"session\.fill_hole_area: expected an integer >= 0"),
        (lambda d: d.update(session={"memory_mode": "crowds"}),
         r"session\.memory_mode: unknown memory mode 'crowds'; valid: sam2, presence"),
        (lambda d: d.update(session={"memory_mode": ["presence"]}), r"session\.memory_mode: a memory mode is a name"),
    ],
)
def test_bad_sidecars_are_refused_naming_the_field(tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    data = minimal()
    edit(data)
    path = tmp_path / "shot.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SidecarError, match=message) as info:
        load_sidecar(path)
    assert str(info.value).startswith(str(path))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SidecarError, match="no such sidecar file"):
        load_sidecar(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"format": \n')
    with pytest.raises(SidecarError, match=r"not valid JSON \(line 2"):
        load_sidecar(tmp_path / "bad.json")
    with pytest.raises(SidecarError, match=r"out\.json: objects: expected a non-empty list"):
        save_sidecar(minimal(objects=[]), tmp_path / "out.json")
    with pytest.raises(SidecarError, match="something JSON cannot store"):
        save_sidecar(minimal(metadata={"when": object()}), tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_relative_paths_are_taken_from_the_sidecars_folder(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    cv2.imwrite(str(tmp_path / "jobs" / "hand_painted.png"), np.eye(4, 6, dtype=np.uint8) * 255)
    data = minimal(model={"checkpoint": "ckpt/model.pt", "config": "cfg.json#sam2.1"})
    data["objects"][0]["prompts"].append({"frame": 2, "mask": {"file": "hand_painted.png"}})
    save_sidecar(data, tmp_path / "jobs" / "shot.json")
    sidecar = load_sidecar(tmp_path / "jobs" / "shot.json")
    assert sidecar.plate_path == str(tmp_path / "jobs" / "plates" / "shot.####.png")
    model = sidecar.resolved_model()
    assert model is not None
    assert model.checkpoint == str(tmp_path / "jobs" / "ckpt" / "model.pt")
    assert model.config == f"{tmp_path / 'jobs' / 'cfg.json'}#sam2.1"
    np.testing.assert_array_equal(sidecar.objects[0].prompts[1].mask, np.eye(4, 6, dtype=bool))
    # official names and absolute paths are kept as written
    named = Sidecar.from_dict(minimal(model={"checkpoint": "sam2.1_hiera_large"}), base_dir=tmp_path)
    assert named.resolved_model().checkpoint == "sam2.1_hiera_large"  # type: ignore[union-attr]
    # what is saved loads back to the same dict (the inline form for file masks)
    again = Sidecar.from_dict(sidecar.to_dict(), base_dir=tmp_path / "jobs")
    assert again.to_dict() == sidecar.to_dict()
    assert "counts" in sidecar.to_dict()["objects"][0]["prompts"][1]["mask"]


def test_colour_settings_are_recorded_and_read_back(tmp_path: Path) -> None:
    colour = {"config": "ocio://studio-config-latest", "colorspace": "ACEScg", "display": "sRGB - Display",
              "view": "Un-tone-mapped"}
    data = minimal()
    data["shot"]["colour"] = colour
    sidecar = Sidecar.from_dict(data, base_dir=tmp_path)
    assert sidecar.to_dict()["shot"]["colour"] == colour
    settings = sidecar.shot.colour_settings()
    assert settings is not None and settings.colorspace == "ACEScg" and settings.view == "Un-tone-mapped"
    # older files with a view curve mean "no config, that curve"
    older = minimal()
    older["shot"]["view"] = {"curve": "rec709", "exposure": 0.5}
    curve = Sidecar.from_dict(older, base_dir=tmp_path).shot.colour_settings()
    assert curve is not None and (curve.config, curve.view, curve.exposure) == ("none", "rec709", 0.5)
    assert Sidecar.from_dict(minimal(), base_dir=tmp_path).shot.colour_settings() is None


# --- export and replay ---------------------------------------------------------------------------


def test_export_then_replay_gives_the_same_outputs(model: SAM2Model, plate: str, tmp_path: Path) -> None:
    mask = np.zeros((90, 120), bool)
    mask[30:60, 40:75] = True
    with VideoSession(model, plate, state_dir=tmp_path / "interactive") as session:
        session.add_points(102, 1, [[38, 45], [5, 5]], [1, 0])
        session.add_box(105, 1, [50, 25, 90, 65], points=[[70, 45]], labels=[1])
        session.add_mask(103, 2, mask)
        data = session_to_sidecar(session, model="sam2.1_hiera_tiny", name="sh010", object_names={2: "mask_obj"},
                                  metadata={"artist": "me"})
        expected_prompted = {f: session.frame_result(f).logits for f in (102, 103, 105)}
        expected_tracked = [r.logits for r in session.propagate(102)]

    assert data["shot"] == {"name": "sh010", "plate": plate, "first": 101, "last": 106}
    assert data["model"] == {"checkpoint": "sam2.1_hiera_tiny"}
    assert data["metadata"] == {"artist": "me"}
    obj1, obj2 = data["objects"]
    assert obj1["prompts"][0] == {"frame": 102, "points": [[38.0, 45.0], [5.0, 5.0]], "labels": [1, 0]}
    assert obj1["prompts"][1] == {"frame": 105, "box": [50.0, 25.0, 90.0, 65.0], "points": [[70.0, 45.0]],
                                  "labels": [1]}
    assert obj2["name"] == "mask_obj" and set(obj2["prompts"][0]["mask"]) == {"height", "width", "counts"}

    path = save_sidecar(data, tmp_path / "sh010.json")
    sidecar = load_sidecar(path)
    assert sidecar.keyframe == 102 and sidecar.object_names == {2: "mask_obj"}
    with VideoSession(model, sidecar.plate_path, first=sidecar.shot.first, last=sidecar.shot.last) as replay:
        apply_prompts(replay, sidecar)
        for frame, logits in expected_prompted.items():
            np.testing.assert_array_equal(replay.frame_result(frame).logits, logits)
        for got, want in zip([r.logits for r in replay.propagate(102)], expected_tracked, strict=True):
            np.testing.assert_array_equal(got, want)


def test_clicks_added_step_by_step_export_as_one_click_set(model: SAM2Model, plate: str, tmp_path: Path) -> None:
    with VideoSession(model, plate, state_dir=tmp_path / "interactive") as session:
        session.add_box(104, 1, [10, 10, 60, 70])
        session.add_points(104, 1, [[30, 40]], [1], clear=False)
        session.add_points(104, 1, [[5, 5]], [0], clear=False)
        data = session_to_sidecar(session)
    assert data["objects"][0]["prompts"] == [
        {"frame": 104, "box": [10.0, 10.0, 60.0, 70.0], "points": [[30.0, 40.0], [5.0, 5.0]], "labels": [1, 0]}
    ]
    # the micro model's config is not an official one: no model entry
    assert "model" not in data


def test_export_needs_what_the_session_cannot_know(model: SAM2Model, plate: str) -> None:
    frames = np.zeros((3, 90, 120, 3), np.uint8)
    with VideoSession(model, frames, keep_in_memory=True) as session:
        with pytest.raises(SidecarError, match="no prompts"):
            session_to_sidecar(session, plate="x.mp4")
        session.add_points(1, 1, [[3, 3]], [1])
        with pytest.raises(SidecarError, match="pushed in memory and have no file: pass plate="):
            session_to_sidecar(session)
        data = session_to_sidecar(session, plate="shot.mp4")
        assert data["shot"] == {"plate": "shot.mp4", "first": 0, "last": 2} and "model" not in data
        session.add_mask(2, 3, np.ones((90, 120), bool))
        with pytest.raises(SidecarError, match="object 3 frame 2: the prompt is a mask the session did not keep"):
            session_to_sidecar(session, plate="shot.mp4")


def test_replay_errors_name_object_and_frame(model: SAM2Model, plate: str) -> None:
    sidecar = Sidecar.from_dict(minimal(objects=[{"obj_id": 4, "prompts": [
        {"frame": 999, "points": [[1, 1]], "labels": [1]}]}]), source="sh.json")
    with VideoSession(model, plate) as session, pytest.raises(SidecarError, match=r"sh\.json: object 4 frame 999"):
        apply_prompts(session, sidecar)
    wrong_size = Sidecar.from_dict(minimal(objects=[{"obj_id": 1, "prompts": [
        {"frame": 101, "mask": encode_mask_rle(np.ones((4, 4), bool))}]}]))
    with VideoSession(model, plate) as session, pytest.raises(SidecarError, match="the shot is 120x90"):
        apply_prompts(session, wrong_size)


# --- limits shared by every way of prompting ----------------------------------------------------


def test_sidecar_files_share_the_prompt_limits_and_check_them_before_decoding(tmp_path: Path) -> None:
    from samroto.core.sidecar import PromptLimitError, PromptLimits

    bomb = minimal(objects=[{"obj_id": 1, "prompts": [
        {"frame": 1, "mask": {"height": 40000, "width": 40000, "counts": [40000 * 40000]}}]}])
    path = tmp_path / "bomb.json"
    path.write_text(json.dumps(bomb))
    with pytest.raises(PromptLimitError, match="40000x40000 mask is larger than the limit"):
        load_sidecar(path)  # the batch path: refused from the declared size, nothing allocated
    many = [[1.0, 1.0]] * 1001
    clicks = minimal(objects=[{"obj_id": 1, "prompts": [{"frame": 1, "points": many, "labels": [1] * 1001}]}])
    with pytest.raises(PromptLimitError, match="1001 clicks"):
        Sidecar.from_dict(clicks)
    objects = minimal(objects=[{"obj_id": i, "prompts": [{"frame": 1, "points": [[1, 1]], "labels": [1]}]}
                               for i in range(5)])
    with pytest.raises(PromptLimitError, match="5 objects is more than the limit of 4"):
        Sidecar.from_dict(objects, limits=PromptLimits(max_objects=4))
    assert len(Sidecar.from_dict(objects).objects) == 5


def test_mask_files_must_be_regular_and_inside_the_allowed_folders(tmp_path: Path) -> None:
    import os

    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    cv2.imwrite(str(inside / "m.png"), np.full((4, 4), 255, np.uint8))
    cv2.imwrite(str(outside / "m.png"), np.full((4, 4), 255, np.uint8))
    os.mkfifo(inside / "fifo.png")

    def with_mask(path: Path) -> dict:
        return minimal(objects=[{"obj_id": 1, "prompts": [{"frame": 1, "mask": {"file": str(path)}}]}])

    assert Sidecar.from_dict(with_mask(inside / "m.png"), mask_roots=(inside,)).objects[0].prompts[0].mask.all()
    with pytest.raises(SidecarError, match="not a regular file"):
        Sidecar.from_dict(with_mask(inside / "fifo.png"), mask_roots=(inside,))  # would block on open
    texts = set()
    for path in (outside / "m.png", outside / "missing.png", inside / ".." / "outside" / "m.png"):
        with pytest.raises(SidecarError) as info:
            Sidecar.from_dict(with_mask(path), mask_roots=(inside,))
        texts.add(str(info.value).replace(str(path), "<path>"))
    assert len(texts) == 1  # the same words whether the file exists or not


def test_the_memory_mode_is_exported_and_replayed(model: SAM2Model, plate: str, tmp_path: Path) -> None:
    with VideoSession(model, plate, state_dir=tmp_path / "interactive", memory_mode="presence") as session:
        session.add_points(102, 1, [[38, 45]], [1])
        data = session_to_sidecar(session)
    assert data["session"]["memory_mode"] == "presence"
    loaded = Sidecar.from_dict(data, source="test")
    assert loaded.session.memory_mode == "presence"
    assert "memory_mode" not in Sidecar.from_dict(minimal(), source="test").to_dict()["session"]  # the default
