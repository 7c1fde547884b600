"""The review report: one self-contained HTML page that shows where a tracked shot needs a look.

For every shot (a ``<shot>.confidence.json`` sidecar, see `confidence`) the page holds

- a plot per object of its confidence over the plate's frames (predicted IoU and stability on
  one axis, the object score on another), with the frames to review marked;
- thumbnails of the flagged frames: the plate with every object's matte overlaid, captioned with
  the plate's frame number, the object and the reasons;
- a contact sheet: the same overlay every N frames;

and the page starts with a table of every shot, sorted by worst confidence.

Self-contained: plots are SVG drawn by matplotlib and thumbnails small JPEGs, all as ``data:``
URIs of lazily loaded images (``loading="lazy"``; shot sections use ``content-visibility: auto``),
so a page of hundreds of shots shows its table at once and draws the rest as it scrolls into view;
the style is inline; no script, and a Content-Security-Policy that forbids any request leaving the
page. Frame numbers are always the plate's own.

The sidecar names the plate (``"plate"``: a `FrameSource.describe()` dict) and the matte sequences
(``"mattes"``: object id -> pattern relative to the sidecar's folder) since samroto writes them;
for older sidecars the mattes are looked up under the default names (``<shot>_obj<id>_matte.####.exr``)
and the thumbnails show the mattes alone when the plate cannot be found.

torch-free: numpy, matplotlib, OpenCV and `samroto.core.frames` only.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..frames import FrameError, FramePattern, FrameSource, open_frames
from ..fileio import write_bytes_atomic
from .confidence import SIDECAR_SUFFIX, ConfidenceError, ConfidenceTracker, FrameConfidence, read_sidecar
from .mattes import MatteError, read_matte

__all__ = [
    "REPORT_NAME",
    "ReviewError",
    "ReviewOptions",
    "ShotReview",
    "ShotSummary",
    "find_shots",
    "load_shot",
    "summarize",
    "write_review",
]

REPORT_NAME = "review.html"
# sidecars found under the folders given are capped: a report is for people, not a crawler
MAX_SHOTS = 5000
# object colours in the overlays and plots (RGB), cycled
PALETTE = ((255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 90), (230, 90, 255), (255, 140, 40))
REASON_TEXT = {
    "score_below_zero": "object lost",
    "reappeared": "reappeared",
    "score_drop": "score drop",
    "area_jump": "area jump",
    "low_predicted_iou": "low predicted IoU",
    "low_stability": "unstable edge",
}


class ReviewError(ValueError):
    """Nothing to report on, or a report that cannot be written; the message says which."""


@dataclass(frozen=True)
class ReviewOptions:
    """What goes into the report, and how big it may get."""

    contact_every: int = 10
    """A contact-sheet thumbnail every N plate frames (first and last frame always)."""
    max_contact_frames: int = 36
    """More frames than this make the contact sheet's step larger (stated on the page)."""
    max_flagged_thumbnails: int = 60
    """Flagged frames beyond this are listed with their reasons but get no thumbnail."""
    max_page_thumbnails: int = 6000
    """The whole page's thumbnails (about 5 KB each): beyond, contact sheets get fewer frames."""
    thumbnail_width: int = 240
    """Width of the flagged frames' thumbnails (pixels)."""
    contact_width: int = 160
    """Width of the contact sheet's thumbnails (pixels)."""
    jpeg_quality: int = 70

    def __post_init__(self) -> None:
        if self.contact_every < 1:
            raise ReviewError("the contact sheet's step must be at least 1 frame")
        if not 2 <= self.max_contact_frames <= 1000 or not 0 <= self.max_flagged_thumbnails <= 10000:
            raise ReviewError("thumbnail limits: 2-1000 contact-sheet frames, 0-10000 flagged thumbnails")
        if not 32 <= self.thumbnail_width <= 1024 or not 32 <= self.contact_width <= 1024:
            raise ReviewError("thumbnail widths must be 32-1024 pixels")
        if self.max_page_thumbnails < 1:
            raise ReviewError("max_page_thumbnails must be at least 1")
        if not 10 <= self.jpeg_quality <= 100:
            raise ReviewError("JPEG quality must be 10-100")


@dataclass
class ShotReview:
    """One tracked shot: its confidence records, and where its plate and mattes are."""

    name: str
    sidecar: Path
    tracker: ConfidenceTracker
    plate: dict[str, Any] | str | None = None
    """A spec for `open_frames` (a `describe()` dict or a path), or None when unknown."""
    colour: dict[str, Any] | None = None
    """The plate's colour settings (`ColourSettings.to_dict()`), when `plate` is a path."""
    mattes: dict[int, str] = field(default_factory=dict)
    """object id -> matte sequence pattern (absolute, or relative to the sidecar's folder)."""

    def matte_pattern(self, obj_id: int) -> str | None:
        pattern = self.mattes.get(obj_id)
        if pattern is None:
            return None
        return pattern if os.path.isabs(pattern) else os.path.join(self.sidecar.parent, pattern)


@dataclass(frozen=True)
class ShotSummary:
    """A shot's row in the summary table."""

    name: str
    objects: int
    first: int
    last: int
    flagged_frames: int
    worst_confidence: float
    """Lowest min(predicted IoU, stability) over the frames where an object is present (0 when never present)."""
    worst_frame: int | None
    worst_object: int | None
    lowest_score: float


# ---------------------------------------------------------------------------------------------
# Finding the shots


def load_shot(sidecar: str | os.PathLike[str], *, plate: dict[str, Any] | str | None = None,
              colour: dict[str, Any] | None = None, mattes: dict[int, str] | None = None) -> ShotReview:
    """Read one ``<shot>.confidence.json``; `plate` (and its `colour`) and `mattes` (object id ->
    sequence pattern) override what it records."""
    path = Path(sidecar)
    try:
        tracker, name = read_sidecar(path)
    except ConfidenceError as error:
        raise ReviewError(str(error)) from None
    raw = json.loads(path.read_text(encoding="utf-8"))  # readable: read_sidecar just parsed it
    if plate is None:
        recorded = raw.get("plate")
        plate = recorded if isinstance(recorded, (dict, str)) else None
    name = name or path.name.removesuffix(SIDECAR_SUFFIX)
    patterns: dict[int, str] = {}
    recorded_mattes = raw.get("mattes")
    if isinstance(recorded_mattes, dict):
        for key, pattern in recorded_mattes.items():
            if isinstance(pattern, str) and str(key).lstrip("-").isdigit():
                patterns[int(key)] = pattern
    patterns.update(mattes or {})
    for obj_id in tracker.object_ids():
        if obj_id not in patterns:
            found = _default_matte_pattern(path.parent, name, obj_id)
            if found:
                patterns[obj_id] = found
    return ShotReview(name=name, sidecar=path, tracker=tracker, plate=plate, colour=colour, mattes=patterns)


def _default_matte_pattern(folder: Path, shot: str, obj_id: int) -> str | None:
    """`MatteSequenceWriter`'s default names, for sidecars that do not list their mattes."""
    for ext in ("exr", "png"):
        pattern = FramePattern.parse(folder / f"{shot}_obj{obj_id}_matte.####.{ext}")
        if pattern is not None and os.path.isdir(folder) and pattern.scan():
            return pattern.pattern
    return None


def find_shots(paths: Iterable[str | os.PathLike[str]], *,
               on_error: Callable[[str], None] | None = None) -> list[ShotReview]:
    """Every ``*.confidence.json`` in the folders (searched recursively, hidden folders skipped) or
    files given, sorted by path. Unreadable sidecars are passed to `on_error` and left out."""
    paths = list(paths)
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(Path(root) / n for n in sorted(names) if n.endswith(SIDECAR_SUFFIX))
                if len(files) > MAX_SHOTS:
                    break
        else:
            raise ReviewError(f"{path}: no such folder or confidence file")
    if len(files) > MAX_SHOTS:
        raise ReviewError(f"more than {MAX_SHOTS} confidence files under {', '.join(map(str, paths))}: "
                          "give fewer folders")
    shots = []
    for file in sorted(set(files)):
        try:
            shots.append(load_shot(file))
        except ReviewError as error:
            if on_error is not None:
                on_error(str(error))
    return shots


# ---------------------------------------------------------------------------------------------
# Figures


def _present_confidence(record: FrameConfidence) -> float | None:
    return min(record.predicted_iou, record.stability) if record.present else None


def summarize(shot: ShotReview) -> ShotSummary:
    """The figures of the summary table for one shot."""
    worst, worst_frame, worst_object = math.inf, None, None
    lowest_score = math.inf
    first, last = math.inf, -math.inf
    for obj_id in shot.tracker.object_ids():
        for record in shot.tracker.records(obj_id):
            first, last = min(first, record.frame), max(last, record.frame)
            lowest_score = min(lowest_score, record.object_score)
            value = _present_confidence(record)
            if value is not None and value < worst:
                worst, worst_frame, worst_object = value, record.frame, obj_id
    has_records = math.isfinite(first)
    return ShotSummary(
        name=shot.name,
        objects=len(shot.tracker.object_ids()),
        first=int(first) if has_records else 0,
        last=int(last) if has_records else -1,
        flagged_frames=len(shot.tracker.review_frames()),
        worst_confidence=worst if math.isfinite(worst) else 0.0,
        worst_frame=worst_frame,
        worst_object=worst_object,
        lowest_score=lowest_score if math.isfinite(lowest_score) else 0.0,
    )


def _plot_svg(shot: ShotReview, obj_id: int, plot_id: str) -> str:
    """Confidence of one object over the plate's frames, review frames marked: an inline <svg>.

    Review frames are shaded as one filled band per axis (a fill, not a line per frame, so a shot with
    hundreds of flagged frames still makes a small, fast plot); few of them also get a marker."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    records = shot.tracker.records(obj_id)
    reasons = shot.tracker.reasons(obj_id)
    frames = np.array([r.frame for r in records])
    flagged = np.array([bool(reasons[r.frame]) for r in records])
    color = np.array(PALETTE[_colour_index(shot, obj_id)]) / 255
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": plot_id, "font.size": 8,
                                "path.simplify": True}):
        figure = Figure(figsize=(8.0, 2.6))
        figure.subplots_adjust(left=0.08, right=0.97, top=0.9, bottom=0.17, hspace=0.08)
        quality, score = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        runs = _runs(frames[flagged].tolist())
        for axis in (quality, score):
            # each run of flagged frames shaded over its width (first - 0.5 to last + 0.5), whole height
            axis.broken_barh([(first - 0.5, last - first + 1) for first, last in runs], (0, 1),
                             transform=axis.get_xaxis_transform(), color="#d62728", alpha=0.22, linewidth=0,
                             zorder=0)
        quality.plot(frames, [r.predicted_iou for r in records], color=color, linewidth=1.3, label="predicted IoU")
        quality.plot(frames, [r.stability for r in records], color="#555555", linewidth=1.0, linestyle="--",
                     label="stability")
        quality.fill_between([], [], color="#d62728", alpha=0.22, linewidth=0, label="to review")
        if 0 < flagged.sum() <= 60:
            low = [min(r.predicted_iou, r.stability) for r, f in zip(records, flagged) if f]
            quality.scatter(frames[flagged], low, marker="v", color="#d62728", s=16, zorder=3)
        quality.set_ylim(-0.02, 1.02)
        quality.set_ylabel("quality")
        quality.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, fontsize=7, frameon=False,
                       borderaxespad=0.2)
        score.plot(frames, [r.object_score for r in records], color=color, linewidth=1.3)
        score.axhline(0, color="#888888", linewidth=0.8)
        score.set_ylabel("object score")
        score.set_xlabel("plate frame")
        score.xaxis.set_major_locator(MaxNLocator(integer=True))
        score.set_xlim(frames[0] - 0.5, frames[-1] + 0.5)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    return _svg_image(buffer.getvalue(), f"{shot.name}, object {obj_id}: confidence over frames")


def _runs(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted frame numbers as (first, last) runs of consecutive frames."""
    runs: list[tuple[int, int]] = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], frame)
        else:
            runs.append((frame, frame))
    return runs


_XML_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_PATH_DATA = re.compile(r'\bd="[^"]*"')
_DECIMALS = re.compile(r"(\d\.\d)\d+")
_SPACE_AROUND_COMMANDS = re.compile(r"\s*([MLCQZz])\s*")
_SIZE = re.compile(r'<svg[^>]*?\bwidth="([\d.]+)pt"[^>]*?\bheight="([\d.]+)pt"')


def _compact_path(match: re.Match[str]) -> str:
    # coordinates to 0.1 pt (matplotlib writes 6 decimals) and no spaces around commands: a third
    # of the size, the same drawing
    return _SPACE_AROUND_COMMANDS.sub(r"\1", _DECIMALS.sub(r"\1", match.group(0)))


def _svg_image(svg: str, title: str) -> str:
    """matplotlib's SVG file as an <img> of the page: a data URI, so hundreds of plots cost the
    browser nothing until they scroll into view (inline <svg> elements are all laid out at load)."""
    svg = _METADATA.sub("", _XML_PROLOGUE.sub("", svg, count=1))
    svg = _PATH_DATA.sub(_compact_path, svg)
    size = _SIZE.search(svg)
    width, height = (round(float(size.group(1)) * 4 / 3), round(float(size.group(2)) * 4 / 3)) if size else (768, 250)
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f'<img class="plot" loading="lazy" decoding="async" width="{width}" height="{height}" '
            f'alt="{html.escape(title)}" src="{uri}">')


# ---------------------------------------------------------------------------------------------
# Thumbnails


def _colour_index(shot: ShotReview, obj_id: int) -> int:
    return shot.tracker.object_ids().index(obj_id) % len(PALETTE)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class _ThumbnailMaker:
    """Plate frames with the mattes overlaid, as small JPEG data URIs (RGB in, BGR to OpenCV)."""

    def __init__(self, shot: ShotReview, options: ReviewOptions) -> None:
        self.shot = shot
        self.options = options
        self.plate: FrameSource | None = None
        self.problem: str | None = None
        if shot.plate is None:
            self.problem = "the plate is not recorded in the confidence file: mattes shown alone"
        else:
            try:
                self.plate = open_frames(shot.plate, colour=shot.colour)
            except (FrameError, OSError, ValueError, TypeError) as error:
                self.problem = f"plate not readable ({error}): mattes shown alone"

    def close(self) -> None:
        if self.plate is not None:
            self.plate.close()

    def _plate_frame(self, frame: int) -> np.ndarray | None:
        if self.plate is None or frame not in self.plate.frame_numbers:
            return None
        try:
            return _to_uint8(self.plate.read(frame))
        except (FrameError, OSError, ValueError):
            return None

    def _matte(self, obj_id: int, frame: int) -> np.ndarray | None:
        pattern = self.shot.matte_pattern(obj_id)
        parsed = FramePattern.parse(pattern) if pattern else None
        if parsed is None:
            return None
        try:
            return read_matte(parsed.path(frame))
        except (MatteError, OSError, ValueError):
            return None

    def overlay(self, frame: int) -> np.ndarray | None:
        """The plate frame with every object's matte overlaid, `thumbnail_width` wide (RGB uint8), or
        None when neither plate nor matte exists."""
        import cv2

        plate = self._plate_frame(frame)
        mattes: list[tuple[int, np.ndarray]] = []
        for obj_id in self.shot.tracker.object_ids():
            matte = self._matte(obj_id, frame)
            if matte is not None:
                mattes.append((obj_id, matte))
        if plate is None and not mattes:
            return None
        height, width = plate.shape[:2] if plate is not None else mattes[0][1].shape[:2]
        thumb_w = min(self.options.thumbnail_width, width)
        thumb_h = max(1, round(height * thumb_w / width))
        size = (thumb_w, thumb_h)
        image: np.ndarray
        if plate is not None:
            image = cv2.resize(plate, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        else:
            image = np.full((thumb_h, thumb_w, 3), 40.0, dtype=np.float32)
        outlines: list[tuple[np.ndarray, np.ndarray]] = []
        for obj_id, matte in mattes:
            alpha = cv2.resize(np.asarray(matte, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
            colour = np.array(PALETTE[_colour_index(self.shot, obj_id)], dtype=np.float32)
            weight = 0.45 * np.clip(alpha, 0.0, 1.0)[..., None]
            image = image * (1.0 - weight) + colour * weight
            outlines.append(((alpha > 0.5).astype(np.uint8), colour))
        image_u8 = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        for mask, colour in outlines:
            contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(image_u8, contours, -1, tuple(int(c) for c in colour), 1)
        return image_u8

    def thumbnails(self, frames: Iterable[int]) -> dict[int, np.ndarray | None]:
        """Overlays of `frames`, decoded in ascending order (one pass through a video)."""
        return {frame: self.overlay(frame) for frame in sorted(set(frames))}

    def encode(self, image: np.ndarray | None, width: int) -> tuple[str | None, tuple[int, int]]:
        """(JPEG data URI at most `width` wide, (width, height)); (None, (0, 0)) for no image."""
        import cv2

        if image is None:
            return None, (0, 0)
        if image.shape[1] > width:
            height = max(1, round(image.shape[0] * width / image.shape[1]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality])
        if not ok:
            return None, (0, 0)
        uri = "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
        return uri, (image.shape[1], image.shape[0])


def contact_frames(first: int, last: int, options: ReviewOptions, *, limit: int | None = None) -> tuple[list[int], int]:
    """Plate frames of the contact sheet and the step used (grown to keep within the limit:
    `options.max_contact_frames`, or `limit` when smaller)."""
    if last < first:
        return [], options.contact_every
    most = max(2, min(options.max_contact_frames, limit or options.max_contact_frames))
    step = max(options.contact_every, math.ceil((last - first) / (most - 1)))
    frames = list(range(first, last + 1, step))
    if frames[-1] != last:
        frames.append(last)
    return frames, step


def _thumbnailed_flags(frames: Sequence[int], limit: int) -> set[int]:
    """The flagged frames that get a thumbnail: all within the limit, else the first frame of
    each run of flagged frames, then evenly spread others."""
    if len(frames) <= limit:
        return set(frames)
    starts = [f for i, f in enumerate(frames) if i == 0 or frames[i - 1] != f - 1]
    chosen = set(starts[:limit])
    rest = [f for f in frames if f not in chosen]
    room = limit - len(chosen)
    if room > 0 and rest:
        chosen.update(rest[round(i * (len(rest) - 1) / max(room - 1, 1))] for i in range(room))
    return chosen


# ---------------------------------------------------------------------------------------------
# The page

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 24px 48px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:20px 0 4px}h2{font-size:18px;margin:0 0 4px}h3{font-size:14px;margin:14px 0 6px}
.meta{color:#666;margin:0 0 8px}.problem{color:#a15c00}
table.summary{border-collapse:collapse;background:#fff;margin:12px 0 24px}
.summary th,.summary td{border:1px solid #ddd;padding:4px 10px;text-align:left}
.summary td.num{text-align:right;font-variant-numeric:tabular-nums}
.summary tr.flagged td.flags{color:#c62828;font-weight:600}
section.shot{background:#fff;border:1px solid #ddd;border-radius:6px;padding:14px 18px;margin:18px 0;
content-visibility:auto;contain-intrinsic-size:auto 1200px}
img.plot{display:block;width:100%;max-width:768px;height:auto}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}
figure.thumb{margin:0;width:var(--w);font-size:12px}
figure.thumb img{display:block;width:100%;height:auto;background:#333}
figure.thumb.flagged img{outline:2px solid #d62728}
figure.thumb .frame{font-weight:600;font-variant-numeric:tabular-nums}
ul.flags{columns:3 260px;margin:4px 0;padding-left:18px;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
"""
# nothing may leave the page: no script, no fetch; images only from data: URIs
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _reasons_text(reasons: Iterable[str]) -> str:
    return ", ".join(REASON_TEXT.get(r, r) for r in reasons)


def _swatch(shot: ShotReview, obj_id: int) -> str:
    r, g, b = PALETTE[_colour_index(shot, obj_id)]
    return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>'


def _thumb(uri: str | None, size: tuple[int, int], alt: str, caption: str, classes: str, frame: int) -> str:
    image = (f'<img loading="lazy" decoding="async" width="{size[0]}" height="{size[1]}" alt="{_e(alt)}" '
             f'src="{uri}">' if uri else '<div class="missing">no plate or matte</div>')
    return (f'<figure class="thumb {classes}" data-frame="{frame}" style="--w:{size[0] or 160}px">{image}'
            f'<figcaption>{caption}</figcaption></figure>')


def _shot_section(index: int, shot: ShotReview, summary: ShotSummary, options: ReviewOptions,
                  contact_limit: int) -> str:
    tracker = shot.tracker
    review = tracker.review()
    flagged = tracker.review_frames()
    parts = [f'<section class="shot" id="shot-{index}" data-shot="{_e(shot.name)}">',
             f"<h2>{_e(shot.name)}</h2>",
             f'<p class="meta">frames {summary.first}–{summary.last} · {summary.objects} object(s) · '
             f"{len(flagged)} frame(s) to review · {_e(shot.sidecar)}</p>"]
    maker = _ThumbnailMaker(shot, options)
    try:
        if maker.problem:
            parts.append(f'<p class="problem">{_e(maker.problem)}</p>')
        for obj_id in tracker.object_ids():
            parts.append(f'<div class="object" data-object="{obj_id}"><h3>{_swatch(shot, obj_id)}object {obj_id}</h3>')
            parts.append(_plot_svg(shot, obj_id, f"s{index}o{obj_id}"))
            parts.append("</div>")
        by_frame: dict[int, list[str]] = {}
        for item in review:
            by_frame.setdefault(item.frame, []).append(f"object {item.object_id}: {_reasons_text(item.reasons)}")
        parts.append(f"<h3>Frames to review ({len(flagged)})</h3>")
        with_thumbnail = _thumbnailed_flags(flagged, options.max_flagged_thumbnails)
        sheet, step = contact_frames(summary.first, summary.last, options, limit=contact_limit)
        overlays = maker.thumbnails([*with_thumbnail, *sheet])
        if flagged:
            parts.append('<ul class="flags">' + "".join(
                f'<li data-frame="{f}"><span class="frame">{f}</span> {_e("; ".join(by_frame[f]))}</li>'
                for f in flagged) + "</ul>")
            if len(with_thumbnail) < len(flagged):
                parts.append(f'<p class="meta">thumbnails for {len(with_thumbnail)} of them</p>')
            parts.append('<div class="thumbs flagged">')
            for frame in flagged:
                if frame in with_thumbnail:
                    uri, size = maker.encode(overlays[frame], options.thumbnail_width)
                    caption = f'<span class="frame">{frame}</span> {_e("; ".join(by_frame[frame]))}'
                    parts.append(_thumb(uri, size, f"{shot.name} frame {frame}", caption, "flagged", frame))
            parts.append("</div>")
        else:
            parts.append('<p class="meta">none</p>')
        parts.append(f"<h3>Contact sheet (every {step} frames)</h3><div class=\"thumbs contact\">")
        flagged_set = set(flagged)
        for frame in sheet:
            uri, size = maker.encode(overlays[frame], options.contact_width)
            mark = " flagged" if frame in flagged_set else ""
            parts.append(_thumb(uri, size, f"{shot.name} frame {frame}", f'<span class="frame">{frame}</span>',
                                "contact" + mark, frame))
        parts.append("</div>")
    finally:
        maker.close()
    parts.append("</section>")
    return "\n".join(parts)


def _summary_table(rows: Sequence[tuple[int, ShotSummary]]) -> str:
    head = ("<tr><th>shot</th><th>worst confidence</th><th>at frame</th><th>frames to review</th>"
            "<th>lowest object score</th><th>frames</th><th>objects</th></tr>")
    body = []
    for index, s in rows:
        where = f"{s.worst_frame} (object {s.worst_object})" if s.worst_frame is not None else "never present"
        body.append(
            f'<tr class="{"flagged" if s.flagged_frames else "clean"}" data-shot="{_e(s.name)}">'
            f'<td><a href="#shot-{index}">{_e(s.name)}</a></td><td class="num">{s.worst_confidence:.3f}</td>'
            f'<td class="num">{where}</td><td class="num flags">{s.flagged_frames}</td>'
            f'<td class="num">{s.lowest_score:.2f}</td><td class="num">{s.first}–{s.last}</td>'
            f'<td class="num">{s.objects}</td></tr>')
    return f'<table class="summary" id="summary">{head}{"".join(body)}</table>'


def render_review(shots: Sequence[ShotReview], options: ReviewOptions | None = None, *,
                  title: str = "samroto review", progress: Callable[[ShotReview], None] | None = None) -> str:
    """The report's HTML text. Shots are shown worst first (lowest confidence, then most flagged)."""
    if not shots:
        raise ReviewError("no confidence files to report on")
    options = options or ReviewOptions()
    summaries = [(i, summarize(shot)) for i, shot in enumerate(shots)]
    order = sorted(summaries, key=lambda row: (row[1].worst_confidence, -row[1].flagged_frames, row[1].name))
    total_flagged = sum(s.flagged_frames for _, s in summaries)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    # a page of many shots keeps to `max_page_thumbnails`: flagged frames first, contact sheets shrink
    flagged_thumbnails = sum(min(s.flagged_frames, options.max_flagged_thumbnails) for _, s in summaries)
    contact_limit = max(2, (options.max_page_thumbnails - flagged_thumbnails) // len(shots))
    sections = []
    for index, summary in order:
        sections.append(_shot_section(index, shots[index], summary, options, contact_limit))
        if progress is not None:
            progress(shots[index])
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{len(shots)} shot(s) · {total_flagged} frame(s) to review · made {created}. '
        "Frame numbers are the plate's. Confidence: the lower of predicted IoU and edge stability "
        "where an object is present.</p>",
        _summary_table(order),
        *sections,
        "</body></html>",
    ])


def write_review(shots: Sequence[ShotReview], out: str | os.PathLike[str], options: ReviewOptions | None = None,
                 *, title: str = "samroto review", progress: Callable[[ShotReview], None] | None = None) -> Path:
    """Write the report to `out` (a file, or a folder to hold ``review.html``) atomically; returns its path."""
    target = Path(out)
    if target.is_dir():
        target = target / REPORT_NAME
    if not target.parent.is_dir():
        raise ReviewError(f"folder {target.parent} does not exist")
    text = render_review(shots, options, title=title, progress=progress)
    try:
        write_bytes_atomic(target, text.encode("utf-8"))
    except OSError as error:
        raise ReviewError(f"cannot write {target}: {error}") from None
    return target
