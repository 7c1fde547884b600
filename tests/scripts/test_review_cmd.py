"""The review page as a person sees it: a real clip tracked by the micro model, `samroto matte --review`
and `samroto review`, the page opened in a real headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from samroto.core.outputs.confidence import read_sidecar
from samroto.scripts.cli import main
from tests.browser import Chromium

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "sam2_reference"
MICRO = ["--model", str(FIXTURES / "micro_sam2.1.pt"), "--config", f"{FIXTURES / 'micro_config.json'}#sam2.1"]
CLIP = ROOT.parent / "shared" / "media" / "bedroom.mp4"
LAST_FRAME = 3  # frames 0-3 of the clip: a short real shot

# every image loaded (scrolled into view: thumbnails are lazy), then what each shows
LOAD_IMAGES = """(async () => {
  const out = [];
  for (const img of document.images) {
    img.scrollIntoView();
    if (!img.complete) await new Promise(done => { img.onload = img.onerror = done; setTimeout(done, 10000); });
    const figure = img.closest('figure');
    out.push({frame: figure ? figure.dataset.frame : null, kind: figure ? img.closest('.thumbs').classList[1] : 'plot',
              loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth, lazy: img.loading,
              shown: img.getBoundingClientRect().width});
  }
  window.scrollTo(0, 0);
  return out;
})()"""
FLAGGED_LISTED = "[...document.querySelectorAll('ul.flags li')].map(li => Number(li.dataset.frame))"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The first frames of a real clip, tracked with `samroto matte --review`; (out folder, stdout)."""
    assert CLIP.is_file(), f"the test clip is missing: {CLIP} (../shared/media beside the checkout)"
    out = tmp_path_factory.mktemp("review") / "mattes"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["matte", str(CLIP), "--point", "480,300", "--frame", "1", "--last", str(LAST_FRAME),
                       "--review", "--out", str(out), *MICRO])
    assert status == 0, printed.getvalue()
    return out, printed.getvalue()


def check_page(page_path: Path, flagged: list[int], screenshot: Path) -> dict:
    """Open the page in Chromium, check what a person would see, save a screenshot."""
    text = page_path.read_text(encoding="utf-8")
    # nothing to fetch: no URL in the page, every image inline
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|<script|<link|url\((?!#)", text, re.I)
    assert all(src.startswith("data:image/") for src in re.findall(r'src="([^"]*)"', text))
    with Chromium() as browser:
        page = browser.open(page_path, width=1100, height=1500)
        images = page.evaluate(LOAD_IMAGES)
        listed = page.evaluate(FLAGGED_LISTED)
        page.screenshot(screenshot)
        requests = page.requests
    # no request left the page: the page itself, then only its inline images
    assert requests[0] == page_path.resolve().as_uri()
    assert all(url.startswith("data:image/") for url in requests[1:]), [u[:80] for u in requests]
    # plots rendered (matplotlib's SVG, decoded by the browser) at a size one can read, over the plate's frames
    plots = [i for i in images if i["kind"] == "plot"]
    assert plots and all(p["loaded"] and p["width"] >= 600 and p["shown"] >= 600 for p in plots), plots
    for uri in re.findall(r'<img class="plot"[^>]*src="data:image/svg\+xml;base64,([^"]+)"', text):
        svg = base64.b64decode(uri).decode()
        assert "plate frame" in svg and "object score" in svg and "to review" in svg
        assert all(re.search(rf">\s*{f}\s*<", svg) for f in flagged), "a tick for every frame of a short shot"
    # every flagged frame listed, each with a thumbnail that loaded (lazily)
    assert listed == flagged
    thumbnails = [i for i in images if i["kind"] == "flagged"]
    assert [int(i["frame"]) for i in thumbnails] == flagged
    assert all(i["loaded"] and i["width"] > 0 and i["lazy"] == "lazy" for i in images), images
    # the screenshot is a real rendering: not blank
    shot = cv2.imread(str(screenshot))
    assert shot is not None and shot.shape[:2] == (1500, 1100) and shot.std() > 20
    keep = os.environ.get("SAMROTO_SCREENSHOT_DIR")
    if keep:
        shutil.copy(screenshot, Path(keep) / screenshot.name)
    return {"images": images}


def test_matte_review_page_in_a_real_browser(tracked: tuple[Path, str], tmp_path: Path) -> None:
    out, printed = tracked
    page_path = out / "bedroom_review.html"
    assert f"review: {page_path.resolve()}" in printed
    tracker, _ = read_sidecar(out / "bedroom.confidence.json")
    flagged = tracker.review_frames()
    # the micro model's random weights give unstable edges: every frame of this clip is flagged
    assert flagged == list(range(0, LAST_FRAME + 1))
    seen = check_page(page_path, flagged, tmp_path / "matte_review.png")
    # the contact sheet uses the plate's own numbers: the first and the last frame of the shot
    assert [int(i["frame"]) for i in seen["images"] if i["kind"] == "contact"] == [0, LAST_FRAME]
    # thumbnails are small: 240 pixels wide for flagged frames, 160 on the contact sheet
    assert {i["kind"]: i["width"] for i in seen["images"] if i["kind"] != "plot"} == {"flagged": 240, "contact": 160}


def test_review_command_finds_the_shot_and_its_plate(tracked: tuple[Path, str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out, _ = tracked
    page_path = tmp_path / "all.html"
    assert main(["review", str(out), "--out", str(page_path), "--every", "2", "--quiet"]) == 0
    assert f"1 shot(s), {LAST_FRAME + 1} frame(s) to review: {page_path.resolve()}" in capsys.readouterr().out
    text = page_path.read_text(encoding="utf-8")
    # the sidecar records the plate: thumbnails are the clip, not the mattes alone
    assert "mattes shown alone" not in text
    frames = [int(f) for f in re.findall(r'<figure class="thumb contact[^"]*" data-frame="(\d+)"', text)]
    assert frames == [0, 2, 3]
    first = re.search(r'data-frame="1".*?src="data:image/jpeg;base64,([^"]+)"', text, re.S)
    assert first is not None
    thumbnail = cv2.imdecode(np.frombuffer(base64.b64decode(first.group(1)), np.uint8), cv2.IMREAD_COLOR)
    assert thumbnail.shape == (135, 240, 3) and thumbnail.std() > 10


def test_review_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["review", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["review", str(tmp_path)]) == 2
    assert "no readable *.confidence.json" in capsys.readouterr().err
    (tmp_path / "broken.confidence.json").write_text("{not json")
    assert main(["review", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "warning:" in err and "broken.confidence.json" in err
    assert main(["review", str(tmp_path), "--every", "0"]) == 2
    assert "at least 1 frame" in capsys.readouterr().err
