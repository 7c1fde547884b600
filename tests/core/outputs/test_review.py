"""The review page's content, from confidence files, plates and mattes written to disk (no model)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from samroto.core.outputs.confidence import ConfidenceTracker, FrameConfidence
from samroto.core.outputs.mattes import MatteSequenceWriter
from samroto.core.outputs.review import (ReviewError, ReviewOptions, contact_frames, find_shots, load_shot,
                                         render_review, summarize, write_review)
from samroto.core.outputs.review import _thumbnailed_flags as thumbnailed_flags

WIDTH, HEIGHT = 96, 64


def record(frame: int, obj_id: int, *, score: float = 5.0, iou: float = 0.9, stability: float = 0.95,
           area: float = 0.2) -> FrameConfidence:
    pixels = int(area * WIDTH * HEIGHT)
    return FrameConfidence(frame, obj_id, score, iou, stability, pixels, pixels / (WIDTH * HEIGHT))


def make_shot(folder: Path, name: str, frames: range, *, bad: dict[int, dict] | None = None,
              objects: tuple[int, ...] = (1,), plate: bool = True, mattes: bool = True) -> Path:
    """A shot on disk: a PNG plate (a green square on grey), PNG mattes of the square, its confidence file."""
    folder.mkdir(parents=True, exist_ok=True)
    tracker = ConfidenceTracker()
    writer = MatteSequenceWriter(out_dir=folder, shot=name, format="png")
    for frame in frames:
        image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        x = 10 + (frame - frames.start) * 3
        cv2.rectangle(image, (x, 20), (x + 20, 40), (40, 200, 40), -1)
        if plate:
            cv2.imwrite(str(folder / f"plate.{frame:04d}.png"), image)
        alpha = np.zeros((len(objects), HEIGHT, WIDTH), np.float32)
        alpha[:, 20:41, x:x + 21] = 1.0
        if mattes:
            writer.write_alphas(frame, list(objects), alpha)
        for obj_id in objects:
            tracker.add(record(frame, obj_id, **(bad or {}).get(frame, {})))
    path = tracker.write_sidecar(folder, name)
    if plate:  # what samroto records since the review page exists
        import json

        data = json.loads(path.read_text())
        data["plate"] = {"kind": "image_sequence", "pattern": str(folder / "plate.####.png")}
        path.write_text(json.dumps(data))
    return path


def thumbnails(text: str, kind: str) -> list[int]:
    return [int(f) for f in re.findall(rf'<figure class="thumb {kind}[^"]*" data-frame="(\d+)"', text)]


def test_the_page_shows_every_shot_worst_first(tmp_path: Path) -> None:
    make_shot(tmp_path / "good", "good", range(1001, 1013))
    make_shot(tmp_path / "bad", "bad", range(1001, 1013), objects=(1, 2),
              bad={1005: {"iou": 0.2}, 1006: {"area": 0.02}, 1007: {"score": -3.0}})
    shots = find_shots([tmp_path])
    assert [s.name for s in shots] == ["bad", "good"]
    summary = summarize(shots[0])
    assert summary.worst_confidence == pytest.approx(0.2) and summary.worst_frame == 1005
    assert summary.flagged_frames == len(shots[0].tracker.review_frames()) >= 3
    assert (summary.first, summary.last, summary.objects) == (1001, 1012, 2)

    path = write_review(list(reversed(shots)), tmp_path, ReviewOptions(contact_every=5))
    assert path == tmp_path / "review.html"
    text = path.read_text(encoding="utf-8")
    table = text[text.index('<table class="summary"'):text.index("</table>")]
    assert table.index('data-shot="bad"') < table.index('data-shot="good"')  # worst first
    bad_section = text[text.index('data-shot="bad"', text.index("</table>")):text.index('data-shot="good"',
                                                                                       text.index("</table>"))]
    # every flagged frame listed and thumbnailed with its reasons, the plate's own numbers
    assert thumbnails(bad_section, "flagged") == shots[0].tracker.review_frames()
    assert "low predicted IoU" in bad_section and "object lost" in bad_section and "area jump" in bad_section
    assert thumbnails(bad_section, "contact") == [1001, 1006, 1011, 1012]
    # one plot per object, an SVG drawn by matplotlib over the plate's frame numbers, marking flagged frames
    plots = re.findall(r'<img class="plot"[^>]*src="data:image/svg\+xml;base64,([^"]+)"', bad_section)
    assert len(plots) == 2
    svg = base64.b64decode(plots[0]).decode()
    assert svg.startswith("<svg") and "plate frame" in svg and "object score" in svg and "to review" in svg
    assert re.search(r">\s*1004\s*<", svg) and re.search(r">\s*1010\s*<", svg)  # the plate's frame numbers
    # the page fetches nothing: no URL, every image inline and lazy, no script, a CSP forbidding requests
    assert not re.search(r"https?://", text)
    assert "default-src 'none'" in text and "<script" not in text
    assert all(src.startswith("data:image/") for src in re.findall(r'src="([^"]*)"', text))
    assert text.count('loading="lazy"') == text.count("<img ")


def test_thumbnails_are_the_plate_with_the_matte_overlaid(tmp_path: Path) -> None:
    sidecar = make_shot(tmp_path / "sh", "sh", range(1, 4), bad={2: {"iou": 0.1}})
    text = render_review([load_shot(sidecar)], ReviewOptions(thumbnail_width=48))
    uri = re.search(r'data-frame="2"[^>]*><img [^>]*src="data:image/jpeg;base64,([^"]+)"', text)
    assert uri is not None
    image = cv2.imdecode(np.frombuffer(base64.b64decode(uri.group(1)), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (32, 48, 3)
    # frame 2: the square spans x 13..33 of 96; halved -> about 7..16. The overlay tints it red.
    inside, outside = image[15, 11].astype(int), image[5, 40].astype(int)
    assert inside[2] > inside[1] and abs(outside[2] - outside[1]) < 25  # BGR: red inside, grey outside


def test_missing_plate_or_mattes_are_said_not_fatal(tmp_path: Path) -> None:
    no_plate = make_shot(tmp_path / "a", "a", range(1, 3), plate=False)
    nothing = make_shot(tmp_path / "b", "b", range(1, 3), plate=False, mattes=False)
    text = render_review([load_shot(no_plate), load_shot(nothing)])
    assert text.count("mattes shown alone") == 2
    assert thumbnails(text, "contact") == [1, 2, 1, 2]
    assert "no plate or matte" in text
    moved = load_shot(no_plate, plate=str(tmp_path / "gone.####.png"))
    assert "plate not readable" in render_review([moved])


def test_limits_keep_big_shots_small(tmp_path: Path) -> None:
    frames, step = contact_frames(1001, 1400, ReviewOptions(contact_every=10, max_contact_frames=36))
    assert step == 12 and frames[0] == 1001 and frames[-1] == 1400 and len(frames) <= 36
    assert contact_frames(5, 5, ReviewOptions())[0] == [5]
    # flagged beyond the limit: the start of every run first, then spread over the rest
    flagged = list(range(100, 150)) + [200] + list(range(300, 320))
    chosen = thumbnailed_flags(flagged, 10)
    assert len(chosen) == 10 and {100, 200, 300} <= chosen
    sidecar = make_shot(tmp_path / "long", "long", range(1, 41), bad={f: {"iou": 0.1} for f in range(1, 41)})
    text = render_review([load_shot(sidecar)], ReviewOptions(max_flagged_thumbnails=5, max_contact_frames=4))
    assert len(re.findall(r'<li data-frame="\d+">', text)) == 40  # all listed
    assert len(thumbnails(text, "flagged")) == 5 and "thumbnails for 5 of them" in text
    assert len(thumbnails(text, "contact")) <= 5


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReviewError, match="no such folder"):
        find_shots([tmp_path / "nope"])
    with pytest.raises(ReviewError, match="no confidence files"):
        render_review([])
    (tmp_path / "x.confidence.json").write_text('{"schema": "other"}')
    errors: list[str] = []
    assert find_shots([tmp_path], on_error=errors.append) == [] and "not a samroto.confidence" in errors[0]
    with pytest.raises(ReviewError, match="contact sheet"):
        ReviewOptions(contact_every=0)
