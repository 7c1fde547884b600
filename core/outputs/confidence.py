"""Per-frame confidence of each tracked object, and the list of frames an artist should review.

For every frame and object the model gives an *object score* (a logit: > 0 means the object is
predicted to be visible), a *predicted IoU* (the mask decoder's own estimate of its mask's
quality) and the mask logits. From the logits we add a *stability*: the IoU between the mask
thresholded at +delta and at -delta (SAM's stability score; 1 when a small change of threshold
does not move the edge, lower when the edge is uncertain), and the mask's area.
`ConfidenceTracker` collects these records over a shot and flags frames to review:

- ``"score_below_zero"``: the object score falls below 0 (the model thinks the object is gone;
  flagged on the first frame of each such run, and again on the frame it comes back:
  ``"reappeared"``);
- ``"score_drop"``: the score falls by more than `ReviewThresholds.score_drop` from the
  previous frame, even if it stays positive;
- ``"area_jump"``: the mask area changes by more than `ReviewThresholds.area_jump` (a fraction)
  from the previous frame (both frames present, and the larger area at least
  `ReviewThresholds.min_area_fraction` of the frame, so specks do not count);
- ``"low_predicted_iou"`` / ``"low_stability"``: below `min_predicted_iou` / `min_stability`
  while the object is present.

Sidecar file ``<name>.confidence.json`` (UTF-8, written atomically next to the mattes)::

    {
      "schema": "samroto.confidence",
      "version": 1,
      "name": "<name>",
      "thresholds": {"score_drop": 4.0, "area_jump": 0.3, ...},      # ReviewThresholds
      "objects": {
        "<object id>": [                                              # frame order
          {"frame": 1001, "object_score": 7.2, "predicted_iou": 0.93, "stability": 0.97,
           "area": 51234, "area_fraction": 0.0247, "reasons": []},
          ...
        ]
      },
      "review": [{"frame": 1017, "object_id": 1, "reasons": ["area_jump"]}, ...],
      "review_frames": [1017, ...],                                   # sorted, unique
      "plate": {"kind": "video", "path": "/shots/sh010.mov", ...},    # optional: FrameSource.describe()
      "mattes": {"<object id>": "sh010_obj1_matte.####.exr", ...}     # optional: relative to this file
    }

"plate" and "mattes" let the review page (`review`) show the plate under the mattes; they are
absent when unknown (frames pushed by a host).

Readers must reject a different "schema" and a "version" newer than they know; fields may be
added within a version. Floats are plain JSON numbers (NaN is never written).

EXR headers (`exr_attributes`) carry the same record under ``samroto/...`` names
(``samroto/objectScore`` etc.), as floats or strings, for `core.mattes` to write.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..fileio import write_json_atomic

SCHEMA = "samroto.confidence"
SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".confidence.json"


class ConfidenceError(ValueError):
    """Bad confidence input or an unreadable sidecar."""


@dataclass(frozen=True)
class FrameConfidence:
    """Confidence of one object on one frame."""

    frame: int
    object_id: int
    object_score: float
    """Object-presence logit from the model (> 0: visible)."""
    predicted_iou: float
    """The mask decoder's estimate of the mask's IoU with the truth (0..1)."""
    stability: float
    """IoU of the mask at logits > +delta and > -delta (0..1; 1 for an empty, stable mask)."""
    area: int
    """Pixels with logit > 0, at the resolution of the logits given."""
    area_fraction: float
    """`area` divided by the number of pixels: comparable across resolutions."""

    @property
    def present(self) -> bool:
        return self.object_score > 0 and self.area > 0


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ConfidenceError(f"{name} must be finite, got {value!r}")
    return value


def stability_score(logits: np.ndarray, *, delta: float = 1.0) -> float:
    """IoU of (logits > delta) and (logits > -delta); 1.0 when both are empty. logits: H*W."""
    if delta < 0:
        raise ConfidenceError(f"delta must be >= 0, got {delta}")
    high = np.count_nonzero(logits > delta)
    low = np.count_nonzero(logits > -delta)
    return 1.0 if low == 0 else high / low


def measure(frame: int, object_id: int, logits: np.ndarray, *, object_score: float, predicted_iou: float,
            delta: float = 1.0) -> FrameConfidence:
    """Record for one object on one frame. logits: H*W float mask logits (low-res or upsampled)."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.size == 0:
        raise ConfidenceError(f"logits must be a non-empty H*W array, got shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise ConfidenceError(f"logits must be floating point, got {logits.dtype}")
    area = int(np.count_nonzero(logits > 0))
    return FrameConfidence(
        frame=int(frame),
        object_id=int(object_id),
        object_score=_finite("object_score", object_score),
        predicted_iou=_finite("predicted_iou", predicted_iou),
        stability=float(stability_score(logits, delta=delta)),
        area=area,
        area_fraction=area / logits.size,
    )


@dataclass(frozen=True)
class ReviewThresholds:
    """When a frame needs an artist's look."""

    score_drop: float = 4.0
    """Flag when the object score falls by more than this (logit units) from the previous frame."""
    area_jump: float = 0.3
    """Flag when the area changes by more than this fraction of the larger of the two areas."""
    min_area_fraction: float = 1e-4
    """Area jumps of masks smaller than this fraction of the frame are ignored."""
    min_predicted_iou: float = 0.5
    min_stability: float = 0.8

    def __post_init__(self) -> None:
        for name in ("score_drop", "area_jump", "min_area_fraction"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfidenceError(f"ReviewThresholds.{name} must be a positive number")
        if not 0 < self.area_jump < 1:
            raise ConfidenceError("ReviewThresholds.area_jump is a fraction in (0, 1)")
        for name in ("min_predicted_iou", "min_stability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfidenceError(f"ReviewThresholds.{name} must be in [0, 1]")


@dataclass(frozen=True)
class ReviewItem:
    frame: int
    object_id: int
    reasons: tuple[str, ...]


def review_reasons(previous: FrameConfidence | None, current: FrameConfidence,
                   thresholds: ReviewThresholds) -> tuple[str, ...]:
    """Why `current` needs review, given the same object's record on the previous frame."""
    reasons = []
    if current.object_score < 0 and (previous is None or previous.object_score >= 0):
        reasons.append("score_below_zero")
    if previous is not None and previous.object_score < 0 <= current.object_score:
        reasons.append("reappeared")
    if previous is not None and previous.object_score - current.object_score > thresholds.score_drop:
        reasons.append("score_drop")
    if previous is not None and previous.present and current.present:
        larger = max(previous.area_fraction, current.area_fraction)
        change = abs(current.area_fraction - previous.area_fraction) / larger
        if larger >= thresholds.min_area_fraction and change > thresholds.area_jump:
            reasons.append("area_jump")
    if current.present:
        if current.predicted_iou < thresholds.min_predicted_iou:
            reasons.append("low_predicted_iou")
        if current.stability < thresholds.min_stability:
            reasons.append("low_stability")
    return tuple(reasons)


@dataclass
class ConfidenceTracker:
    """Collects `FrameConfidence` records over a shot; frames may arrive in any order."""

    thresholds: ReviewThresholds = field(default_factory=ReviewThresholds)
    _records: dict[int, dict[int, FrameConfidence]] = field(default_factory=dict, repr=False)

    def add(self, record: FrameConfidence) -> None:
        """Add or replace (re-tracked frame) the record of one object on one frame."""
        self._records.setdefault(record.object_id, {})[record.frame] = record

    def extend(self, records: Iterable[FrameConfidence]) -> None:
        for record in records:
            self.add(record)

    def object_ids(self) -> list[int]:
        return sorted(self._records)

    def records(self, object_id: int) -> list[FrameConfidence]:
        """The object's records in frame order."""
        by_frame = self._records.get(int(object_id), {})
        return [by_frame[f] for f in sorted(by_frame)]

    def reasons(self, object_id: int) -> dict[int, tuple[str, ...]]:
        """frame -> review reasons (empty tuple when fine), comparing with the previous record."""
        out: dict[int, tuple[str, ...]] = {}
        previous = None
        for record in self.records(object_id):
            out[record.frame] = review_reasons(previous, record, self.thresholds)
            previous = record
        return out

    def review(self) -> list[ReviewItem]:
        """Every flagged (frame, object), ordered by frame then object."""
        items = [ReviewItem(frame, oid, why)
                 for oid in self.object_ids() for frame, why in self.reasons(oid).items() if why]
        return sorted(items, key=lambda item: (item.frame, item.object_id))

    def review_frames(self) -> list[int]:
        """Sorted frame numbers with at least one flagged object."""
        return sorted({item.frame for item in self.review()})

    def to_dict(self, name: str, *, plate: dict | None = None, mattes: dict[int, str] | None = None) -> dict:
        """The sidecar's content (see the module docstring); `plate` and `mattes` are recorded when given."""
        objects = {}
        for oid in self.object_ids():
            reasons = self.reasons(oid)
            objects[str(oid)] = [{  # plain Python numbers: records may hold numpy scalars
                "frame": int(r.frame), "object_score": float(r.object_score),
                "predicted_iou": float(r.predicted_iou), "stability": float(r.stability),
                "area": int(r.area), "area_fraction": float(r.area_fraction),
                "reasons": list(reasons[r.frame]),
            } for r in self.records(oid)]
        review = self.review()
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "name": name,
            "thresholds": asdict(self.thresholds),
            "objects": objects,
            "review": [{"frame": int(i.frame), "object_id": int(i.object_id), "reasons": list(i.reasons)}
                       for i in review],
            "review_frames": sorted({int(i.frame) for i in review}),
            **({"plate": dict(plate)} if plate else {}),
            **({"mattes": {str(int(k)): str(v) for k, v in mattes.items()}} if mattes else {}),
        }

    def write_sidecar(self, folder: str | os.PathLike[str], name: str, *, plate: dict | None = None,
                      mattes: dict[int, str] | None = None) -> Path:
        """Write ``<folder>/<name>.confidence.json`` atomically; returns its path. `plate`: the plate's
        `FrameSource.describe()`; `mattes`: object id -> matte sequence pattern relative to `folder`.

        The JSON goes to a temporary file in the same folder, is flushed to disk, then renamed
        over the target (`fileio.write_json_atomic`), so a reader never sees a half-written file.
        """
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ConfidenceError(f"name must be a plain file name stem, got {name!r}")
        directory = Path(folder)
        if not directory.is_dir():
            raise ConfidenceError(f"sidecar folder does not exist: {directory}")
        target = directory / f"{name}{SIDECAR_SUFFIX}"
        write_json_atomic(target, self.to_dict(name, plate=plate, mattes=mattes))
        return target


def read_sidecar(path: str | os.PathLike[str]) -> tuple[ConfidenceTracker, str]:
    """Load a sidecar written by `ConfidenceTracker.write_sidecar`: (tracker, name)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfidenceError(f"cannot read confidence sidecar {path}: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfidenceError(f"{path} is not a {SCHEMA} sidecar")
    version = data.get("version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ConfidenceError(f"{path} has version {version!r}; this samroto reads up to {SCHEMA_VERSION}")
    known = {f for f in ReviewThresholds.__dataclass_fields__}
    thresholds = ReviewThresholds(**{k: v for k, v in data.get("thresholds", {}).items() if k in known})
    tracker = ConfidenceTracker(thresholds)
    try:
        for oid, rows in data["objects"].items():
            for row in rows:
                tracker.add(FrameConfidence(int(row["frame"]), int(oid), float(row["object_score"]),
                                            float(row["predicted_iou"]), float(row["stability"]),
                                            int(row["area"]), float(row["area_fraction"])))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ConfidenceError(f"{path}: malformed record ({error})") from None
    return tracker, str(data.get("name", ""))


def exr_attributes(record: FrameConfidence, *, reasons: Iterable[str] = ()) -> dict[str, float | str]:
    """EXR header attributes for one object's matte on one frame (floats and strings only)."""
    return {
        "samroto/confidenceVersion": float(SCHEMA_VERSION),
        "samroto/frame": float(record.frame),
        "samroto/objectId": float(record.object_id),
        "samroto/objectScore": float(record.object_score),
        "samroto/predictedIoU": float(record.predicted_iou),
        "samroto/stability": float(record.stability),
        "samroto/area": float(record.area),
        "samroto/areaFraction": float(record.area_fraction),
        "samroto/review": ",".join(reasons),
    }
