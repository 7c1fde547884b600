"""Per-frame confidence records, review flags, the sidecar JSON and EXR header attributes."""

from __future__ import annotations

import json

import numpy as np
import OpenEXR
import pytest

from samroto.core.outputs import confidence as C


def record(frame: int, score: float, area: int, *, object_id: int = 1, iou: float = 0.9,
           stability: float = 0.95, pixels: int = 10000) -> C.FrameConfidence:
    return C.FrameConfidence(frame, object_id, score, iou, stability, area, area / pixels)


def test_stability_is_iou_of_the_two_thresholds():
    logits = np.array([[-3.0, -0.5, 0.5, 2.0], [3.0, 0.9, -1.5, 1.5]], np.float32)
    # > +1: 2.0, 3.0, 1.5 (3 pixels); > -1: -0.5, 0.5, 2.0, 3.0, 0.9, 1.5 (6 pixels)
    assert C.stability_score(logits, delta=1.0) == pytest.approx(0.5)
    assert C.stability_score(logits, delta=0.0) == pytest.approx(1.0)
    assert C.stability_score(np.full((3, 3), -5.0), delta=1.0) == 1.0  # stably empty


def test_measure_fills_the_record():
    logits = np.full((10, 20), -4.0, np.float32)
    logits[2:6, 3:8] = 6.0  # 20 pixels, far from the thresholds
    r = C.measure(1001, 3, logits, object_score=5.5, predicted_iou=0.87)
    assert (r.frame, r.object_id, r.area) == (1001, 3, 20)
    assert r.area_fraction == pytest.approx(0.1)
    assert r.stability == 1.0 and r.object_score == 5.5 and r.predicted_iou == pytest.approx(0.87)
    assert r.present


@pytest.mark.parametrize("kwargs, message", [
    ({"logits": np.zeros((4, 4, 2), np.float32)}, "H\\*W"),
    ({"logits": np.zeros((4, 4), np.int32)}, "floating"),
    ({"object_score": float("nan")}, "object_score must be finite"),
    ({"predicted_iou": float("inf")}, "predicted_iou must be finite"),
])
def test_measure_rejects_bad_input(kwargs, message):
    args = {"logits": np.zeros((4, 4), np.float32), "object_score": 1.0, "predicted_iou": 0.9, **kwargs}
    with pytest.raises(C.ConfidenceError, match=message):
        C.measure(1, 1, args.pop("logits"), **args)


@pytest.fixture
def shot() -> C.ConfidenceTracker:
    tracker = C.ConfidenceTracker()
    rows = [  # frame, score, area
        (1001, 8.0, 2000),
        (1002, 8.5, 2100),   # fine
        (1003, 3.0, 2150),   # score falls by 5.5 > 4: score_drop
        (1004, 3.2, 3300),   # area +35% of the larger: area_jump
        (1005, -2.0, 0),     # gone: score_below_zero (and a drop)
        (1006, -3.0, 0),     # still gone: not flagged again
        (1007, 4.0, 3200),   # reappeared
        (1008, 4.1, 3250),   # fine
    ]
    # Added out of order: the tracker sorts by frame.
    for frame, score, area in reversed(rows):
        tracker.add(record(frame, score, area))
    tracker.add(record(1002, 6.0, 2000, object_id=2, iou=0.3))  # second object: low predicted IoU
    tracker.add(record(1003, 6.0, 2000, object_id=2, stability=0.5))  # low stability
    return tracker


def test_review_flags(shot):
    reasons = shot.reasons(1)
    assert reasons == {
        1001: (), 1002: (), 1003: ("score_drop",), 1004: ("area_jump",),
        1005: ("score_below_zero", "score_drop"), 1006: (), 1007: ("reappeared",), 1008: (),
    }
    assert [(i.frame, i.object_id, i.reasons) for i in shot.review()] == [
        (1002, 2, ("low_predicted_iou",)), (1003, 1, ("score_drop",)), (1003, 2, ("low_stability",)),
        (1004, 1, ("area_jump",)), (1005, 1, ("score_below_zero", "score_drop")), (1007, 1, ("reappeared",)),
    ]
    assert shot.review_frames() == [1002, 1003, 1004, 1005, 1007]


def test_thresholds_change_what_is_flagged(shot):
    lenient = C.ConfidenceTracker(C.ReviewThresholds(score_drop=10.0, area_jump=0.5, min_predicted_iou=0.1,
                                                     min_stability=0.1))
    for oid in shot.object_ids():
        lenient.extend(shot.records(oid))
    assert lenient.review_frames() == [1005, 1007]
    with pytest.raises(ValueError, match="area_jump"):
        C.ReviewThresholds(area_jump=1.5)


def test_tiny_masks_do_not_count_as_area_jumps():
    tracker = C.ConfidenceTracker()
    tracker.add(record(1, 5.0, 1, pixels=1_000_000))
    tracker.add(record(2, 5.0, 3, pixels=1_000_000))  # tripled, but 3 pixels of a million
    assert tracker.review_frames() == []


def test_sidecar_is_versioned_json_written_atomically(shot, tmp_path):
    (tmp_path / "plate_obj1.confidence.json").write_text("old content")
    path = shot.write_sidecar(tmp_path, "plate_obj1")
    assert path == tmp_path / "plate_obj1.confidence.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plate_obj1.confidence.json"]  # no temp files left
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == "samroto.confidence" and data["version"] == 1 and data["name"] == "plate_obj1"
    assert data["review_frames"] == [1002, 1003, 1004, 1005, 1007]
    assert data["thresholds"]["score_drop"] == 4.0
    rows = data["objects"]["1"]
    assert [r["frame"] for r in rows] == list(range(1001, 1009))
    assert rows[3] == {"frame": 1004, "object_score": 3.2, "predicted_iou": 0.9, "stability": 0.95,
                       "area": 3300, "area_fraction": 0.33, "reasons": ["area_jump"]}
    assert {"frame": 1003, "object_id": 2, "reasons": ["low_stability"]} in data["review"]

    loaded, name = C.read_sidecar(path)
    assert name == "plate_obj1"
    assert loaded.records(1) == shot.records(1) and loaded.records(2) == shot.records(2)
    assert loaded.review() == shot.review()


def test_sidecar_accepts_numpy_numbers(tmp_path):
    tracker = C.ConfidenceTracker()
    tracker.add(C.FrameConfidence(np.int64(7), np.int32(1), np.float32(2.5), np.float32(0.75), np.float64(0.5),
                                  np.int64(30), np.float32(0.25)))
    data = json.loads(tracker.write_sidecar(tmp_path, "n").read_text())
    assert data["objects"]["1"][0]["object_score"] == 2.5 and data["objects"]["1"][0]["frame"] == 7


def test_sidecar_errors(shot, tmp_path):
    with pytest.raises(C.ConfidenceError, match="does not exist"):
        shot.write_sidecar(tmp_path / "missing", "x")
    with pytest.raises(C.ConfidenceError, match="plain file name"):
        shot.write_sidecar(tmp_path, "../x")
    newer = tmp_path / "newer.confidence.json"
    newer.write_text(json.dumps({"schema": "samroto.confidence", "version": 99, "objects": {}}))
    with pytest.raises(C.ConfidenceError, match="version 99"):
        C.read_sidecar(newer)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something.else", "version": 1}))
    with pytest.raises(C.ConfidenceError, match="not a samroto.confidence sidecar"):
        C.read_sidecar(other)
    broken = tmp_path / "broken.confidence.json"
    broken.write_text("{not json")
    with pytest.raises(C.ConfidenceError, match="cannot read"):
        C.read_sidecar(broken)


def test_exr_attributes_round_trip_through_openexr(tmp_path):
    r = record(1017, 2.5, 480, object_id=4, iou=0.75, stability=0.625)
    attributes = C.exr_attributes(r, reasons=("area_jump", "low_stability"))
    assert all(isinstance(v, (float, str)) for v in attributes.values())
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **attributes}
    path = str(tmp_path / "matte.1017.exr")
    OpenEXR.File(header, {"A": np.zeros((4, 4), np.float16)}).write(path)
    back = OpenEXR.File(path).header()
    assert back["samroto/frame"] == 1017.0 and back["samroto/objectId"] == 4.0
    assert back["samroto/objectScore"] == pytest.approx(2.5)
    assert back["samroto/predictedIoU"] == pytest.approx(0.75)
    assert back["samroto/stability"] == pytest.approx(0.625)
    assert back["samroto/area"] == 480.0
    assert back["samroto/review"] == "area_jump,low_stability"
