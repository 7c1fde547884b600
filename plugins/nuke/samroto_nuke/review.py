"""The frames to review of a SamRoto node, as the node shows them (no `nuke` here).

After each track the worker says which frames of the session's mattes need a look (the object
is lost or reappears, its score drops, its area jumps, its edge is unstable: `get_review`). The
node lists them in its "to review" knob, one entry per Nuke frame ("12: obj1 area jump"), a
"Go to frame" button jumps the viewer there, and the node's label says how many there are.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REVIEW_KNOB = "samroto_review"
REVIEW_GO_KNOB = "samroto_review_go"
NO_REVIEW = "none"
LABEL_SUFFIX = " to review"
MAX_ENTRIES = 2000  # a menu longer than this helps nobody; the count in the label stays exact

REASON_TEXT = {
    "score_below_zero": "lost",
    "reappeared": "reappeared",
    "score_drop": "score drop",
    "area_jump": "area jump",
    "low_predicted_iou": "low IoU",
    "low_stability": "unstable edge",
}

ReviewItem = Tuple[int, int, Tuple[str, ...]]  # (plate frame, object id, reasons)

_LEADING_FRAME = re.compile(r"^\s*(-?\d+)\s*:")


def review_entries(items: Sequence[ReviewItem], to_nuke_frame: Callable[[int], int]) -> List[str]:
    """One menu entry per flagged Nuke frame, in frame order: "1017: obj1 area jump; obj2 lost"."""
    by_frame: Dict[int, List[str]] = {}
    for frame, obj_id, reasons in items:
        why = ", ".join(REASON_TEXT.get(r, r) for r in reasons)
        by_frame.setdefault(to_nuke_frame(int(frame)), []).append("obj%d %s" % (int(obj_id), why))
    return ["%d: %s" % (frame, "; ".join(parts)) for frame, parts in sorted(by_frame.items())][:MAX_ENTRIES]


def flagged_count(items: Sequence[ReviewItem]) -> int:
    """Distinct flagged frames."""
    return len({int(frame) for frame, _, _ in items})


def frame_of(entry: str) -> Optional[int]:
    """The Nuke frame of a menu entry (None for "none")."""
    match = _LEADING_FRAME.match(entry or "")
    return int(match.group(1)) if match else None


def label_line(count: int) -> str:
    """The node label's line: "3 frames to review" (empty for none)."""
    if count <= 0:
        return ""
    return "%d frame%s%s" % (count, "" if count == 1 else "s", LABEL_SUFFIX)


def with_label_line(label: str, count: int) -> str:
    """The node's label with its review line replaced (the artist's own lines stay, in order)."""
    lines = [line for line in label.splitlines() if not line.endswith(LABEL_SUFFIX)]
    line = label_line(count)
    return "\n".join(lines + ([line] if line else []))
