"""Compact mask previews: run-length encoding of a small binary mask, pure Python.

A preview is `{"height": h, "width": w, "counts": [c0, c1, ...]}`: the mask read row by row
(row-major, top row first) as alternating runs, starting with a run of 0s (possibly empty).
The worker sends one per object and frame in stream results so a host can draw a quick
overlay before it loads the matte files. numpy is used when importable, never required.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple, Union

try:
    import numpy as _np
except ImportError:  # pragma: no cover - exercised by the no-numpy subprocess test
    _np = None  # type: ignore[assignment]

Preview = Dict[str, Any]


def preview_size(height: int, width: int, max_side: int) -> Tuple[int, int]:
    """(h, w) scaled so the longest side is at most `max_side`, aspect kept, at least 1x1."""
    if max_side <= 0:
        raise ValueError("max_side must be positive, got %d" % max_side)
    scale = min(1.0, float(max_side) / max(height, width, 1))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def encode(mask: Any, height: int = 0, width: int = 0) -> Preview:
    """RLE of a binary mask.

    `mask`: H*W numpy array (nonzero = inside), or a flat sequence / bytes of H*W 0/1 values
    together with `height` and `width`.
    """
    if _np is not None and isinstance(mask, _np.ndarray):
        if mask.ndim != 2:
            raise ValueError("mask must be H*W, got shape %s" % (mask.shape,))
        height, width = int(mask.shape[0]), int(mask.shape[1])
        flat = _np.asarray(mask).reshape(-1) != 0
        if flat.size == 0:
            return {"height": height, "width": width, "counts": []}
        change = _np.flatnonzero(flat[1:] != flat[:-1]) + 1
        edges = _np.concatenate(([0], change, [flat.size]))
        runs = [int(c) for c in _np.diff(edges)]
        if flat[0]:
            runs.insert(0, 0)
        return {"height": height, "width": width, "counts": runs}
    values = bytes(bytearray(1 if v else 0 for v in mask)) if not isinstance(mask, (bytes, bytearray)) else mask
    if len(values) != height * width:
        raise ValueError("mask has %d values but height*width is %d" % (len(values), height * width))
    counts: List[int] = []
    current, run = 0, 0
    for v in values:
        bit = 1 if v else 0
        if bit == current:
            run += 1
        else:
            counts.append(run)
            current, run = bit, 1
    if values:
        counts.append(run)
    return {"height": int(height), "width": int(width), "counts": counts}


def check(preview: Any) -> Preview:
    """Validate a preview received over the wire; ValueError naming what is wrong."""
    if not isinstance(preview, dict):
        raise ValueError("a mask preview must be a map")
    height, width, counts = preview.get("height"), preview.get("width"), preview.get("counts")
    if not isinstance(height, int) or not isinstance(width, int) or height < 0 or width < 0:
        raise ValueError("a mask preview needs non-negative integer height and width")
    if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts):
        raise ValueError("a mask preview needs a list of non-negative run lengths")
    if sum(counts) != height * width:
        raise ValueError("mask preview runs add up to %d, expected %d" % (sum(counts), height * width))
    return preview


def decode(preview: Preview, *, as_numpy: bool = True) -> Union[Any, bytes]:
    """The mask of a preview: H*W bool numpy array, or (without numpy / as_numpy=False)
    bytes of H*W 0/1 values in row-major order."""
    check(preview)
    counts: Sequence[int] = preview["counts"]
    if as_numpy and _np is not None:
        values = _np.zeros(len(counts), dtype=bool)
        values[1::2] = True
        flat = _np.repeat(values, counts)
        return flat.reshape(preview["height"], preview["width"])
    out = bytearray()
    for i, run in enumerate(counts):
        out += (b"\x01" if i % 2 else b"\x00") * run
    return bytes(out)


def area(preview: Preview) -> int:
    """Number of inside pixels of a preview."""
    return sum(preview["counts"][1::2])
