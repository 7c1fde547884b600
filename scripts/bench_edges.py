"""`samroto bench edges`: boundary accuracy of the edge refinement on a known alpha.

The ground truth is synthetic, so it is exact: a soft-edged shape with detail finer than SAM 2's
mask grid (a wiggly outline and thin strands), composited over a textured background, so the
plate's edges are exactly the alpha's. The alpha is then degraded the way the model's output
is: area-averaged to 256x256 (the decoder's low-res mask for a 1024x1024 input, which SAM 2
stretches to whatever the plate's aspect), turned into logits, blurred a little (the decoder's
masks are smooth), and bilinearly upsampled back to the plate (half-pixel centres, as
`torch.nn.functional.interpolate(..., align_corners=False)` in SAM 2).

Printed, for the model's binary mask (logits > 0), its sigmoid, and both after `refine_matte`:
mean absolute alpha error in a band around the true edge, boundary F-measure (boundary pixels
of the 0.5 threshold matching within a tolerance), IoU, and the refinement's time per frame.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import cv2
import numpy as np

from samroto.core.outputs.edges import RefineOptions, refine_matte

LOW_RES = 256  # SAM 2's low-res mask side for a 1024 input


@dataclass
class Scene:
    alpha: np.ndarray  # H*W float32, ground truth
    plate: np.ndarray  # H*W*3 uint8, foreground composited over background with `alpha`


def _texture(height: int, width: int, rng: np.random.Generator, base: tuple[float, float, float],
             variation: float, grain: float) -> np.ndarray:
    """Smooth colour variation plus fine grain around `base` (RGB 0..1); H*W*3 float32."""
    low = rng.standard_normal((max(2, height // 64), max(2, width // 64), 3)).astype(np.float32)
    smooth = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.standard_normal((height, width, 3)).astype(np.float32)
    return np.asarray(base, np.float32) + variation * smooth + grain * fine


def make_scene(width: int = 1920, height: int = 1080, *, seed: int = 0, strands: int = 12,
               contrast: float = 1.0, grain: float = 0.02, supersample: int = 4) -> Scene:
    """A soft-edged blob with fine outline detail (and `strands` thin strands) over a textured background."""
    rng = np.random.default_rng(seed)
    s = supersample
    hs, ws = height * s, width * s
    scale = min(width, height)
    cx, cy = 0.5 * width, 0.52 * height
    radius = 0.3 * scale
    # Outline: a few large lobes plus ripples a few pixels deep at a 10-20 px period, finer than
    # one low-res cell (7.5 px at 1920 wide), which the model cannot represent.
    angles = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    r = np.full_like(angles, radius)
    for k, amp in ((2, 0.08), (3, 0.06), (5, 0.04)):
        r += radius * amp * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    for k in (int(0.5 * scale / 6), int(0.5 * scale / 9)):
        r += 0.004 * scale * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    outline = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
    canvas = np.zeros((hs, ws), np.uint8)
    cv2.fillPoly(canvas, [np.round(outline * s * 16).astype(np.int32)], (255,), lineType=cv2.LINE_AA, shift=4)
    # Thin strands (hair, antennae): 1.5-3 px wide, sticking out 5-15% of the frame.
    for _ in range(strands):
        a = rng.uniform(0, 2 * np.pi)
        r_in = np.interp(a, angles, r, period=2 * np.pi) * 0.9
        length = rng.uniform(0.05, 0.15) * scale
        x0, y0 = cx + r_in * np.cos(a), cy + r_in * np.sin(a)
        bend = rng.uniform(-0.3, 0.3)
        pts = []
        for t in np.linspace(0, 1, 24):
            ang = a + bend * t
            pts.append((x0 + t * length * np.cos(ang), y0 + t * length * np.sin(ang)))
        thickness = max(1, int(round(rng.uniform(1.5, 3.0) * s)))
        cv2.polylines(canvas, [np.round(np.array(pts) * s * 16).astype(np.int32)], False, (255,), thickness,
                      lineType=cv2.LINE_AA, shift=4)
    alpha = cv2.resize(canvas.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_AREA)
    alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), 0.6), 0.0, 1.0)  # lens / motion softness
    # `contrast` scales the colour difference between object and background (1: easy, 0.2: hard).
    back_colour = np.array([0.25, 0.35, 0.45])
    fore_colour = back_colour + contrast * (np.array([0.75, 0.55, 0.35]) - back_colour)
    foreground = _texture(height, width, rng, tuple(fore_colour), 0.04, grain)
    background = _texture(height, width, rng, tuple(back_colour), 0.05, grain)
    plate = alpha[..., None] * foreground + (1.0 - alpha[..., None]) * background
    return Scene(alpha.astype(np.float32), np.clip(plate * 255.0 + 0.5, 0, 255).astype(np.uint8))


def degrade_to_logits(alpha: np.ndarray, *, low_res: int = LOW_RES, gain: float = 16.0,
                      blur_cells: float = 0.6) -> np.ndarray:
    """Low-res model-like logits for `alpha`, upsampled back: H*W float32 (0 at the edge)."""
    height, width = alpha.shape
    low = cv2.resize(alpha, (low_res, low_res), interpolation=cv2.INTER_AREA)
    logits = cv2.GaussianBlur((gain * (low - 0.5)).astype(np.float32), (0, 0), blur_cells)
    return cv2.resize(logits, (width, height), interpolation=cv2.INTER_LINEAR)


def boundary_f_measure(predicted: np.ndarray, truth: np.ndarray, tolerance: float = 2.0) -> float:
    """F-measure of the 0.5-threshold boundaries (pixels on the edge) matched within `tolerance` px."""
    def boundary(a: np.ndarray) -> np.ndarray:
        inside = (a >= 0.5).astype(np.uint8)
        cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
        return inside != cv2.erode(inside, cross, borderType=cv2.BORDER_REPLICATE)

    bp, bt = boundary(predicted), boundary(truth)
    if not bp.any() or not bt.any():
        return float(bp.any() == bt.any())
    dist_to_truth = cv2.distanceTransform((~bt).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist_to_pred = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    precision = float((dist_to_truth[bp] <= tolerance).mean())
    recall = float((dist_to_pred[bt] <= tolerance).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def edge_region(truth: np.ndarray, width: int) -> np.ndarray:
    """H*W bool: within `width` px of the true edge, or partially covered."""
    inside = (truth >= 0.5).astype(np.uint8)
    edge = (cv2.dilate(inside, np.ones((3, 3), np.uint8)) != cv2.erode(inside, np.ones((3, 3), np.uint8)))
    edge |= (truth > 0.01) & (truth < 0.99)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(edge.astype(np.uint8), disc).astype(bool)


@dataclass
class Scores:
    band_mae: float
    boundary_f: float
    iou: float


def score(predicted: np.ndarray, truth: np.ndarray, band: np.ndarray, *, tolerance: float = 2.0) -> Scores:
    p, t = predicted >= 0.5, truth >= 0.5
    union = (p | t).sum()
    return Scores(float(np.abs(predicted - truth)[band].mean()), boundary_f_measure(predicted, truth, tolerance),
                  float((p & t).sum() / union) if union else 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=1920, help="plate width (default 1920)")
    parser.add_argument("--height", type=int, default=1080, help="plate height (default 1080)")
    parser.add_argument("--seeds", type=int, default=3, help="number of random scenes (default 3)")
    parser.add_argument("--radius", type=int, default=None, help="guided filter radius (default: auto)")
    parser.add_argument("--eps", type=float, default=RefineOptions.eps, help="guided filter eps")
    parser.add_argument("--band", type=int, default=None, help="refine band in px (default: 2 * radius)")
    parser.add_argument("--gray", action="store_true", help="guide with luminance instead of colour")
    parser.add_argument("--guide-blur", type=float, default=RefineOptions.guide_blur,
                        help="plate blur before guiding, sigma in px")
    parser.add_argument("--clip", type=float, default=RefineOptions.clip, help="clip black / white of the result")
    parser.add_argument("--contrast", type=float, default=1.0,
                        help="object/background colour difference, 1 = easy, 0.2 = hard (default 1)")
    parser.add_argument("--grain", type=float, default=0.02, help="plate noise standard deviation (default 0.02)")
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions per scene")


def run(args: argparse.Namespace) -> int:
    options = RefineOptions(radius=args.radius, eps=args.eps, band=args.band, color=not args.gray,
                            guide_blur=args.guide_blur, clip=args.clip)
    tolerance = max(1.0, max(args.width, args.height) / 1920)  # 1 px at 1920
    print(f"edge refinement on synthetic {args.width}x{args.height} scenes (seeds 0..{args.seeds - 1}); "
          f"radius {options.resolved_radius(args.height, args.width)}, eps {options.eps:g}, "
          f"band {options.band if options.band is not None else 'auto'}, guide blur {options.guide_blur:g}, "
          f"clip {options.clip:g}, "
          f"{'colour' if options.color else 'luminance'} guide; plate contrast {args.contrast:g}, grain {args.grain:g}")
    print(f"band MAE: mean |alpha - truth| within 8 px of the true edge; boundary F within {tolerance:g} px")
    times: list[float] = []
    for label, strands in (("outline only", 0), ("outline + 12 thin strands", 12)):
        rows: dict[str, list[Scores]] = {"binary (logits > 0)": [], "sigmoid(logits)": [],
                                         "refined binary": [], "refined sigmoid": []}
        for seed in range(args.seeds):
            scene = make_scene(args.width, args.height, seed=seed, strands=strands, contrast=args.contrast,
                               grain=args.grain)
            logits = degrade_to_logits(scene.alpha)
            binary = (logits > 0).astype(np.float32)
            soft = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
            band = edge_region(scene.alpha, 8)
            refined_binary = None
            for _ in range(max(1, args.repeat)):
                start = time.perf_counter()
                refined_binary = refine_matte(binary, scene.plate, options=options)
                times.append(time.perf_counter() - start)
            assert refined_binary is not None
            refined_soft = refine_matte(soft, scene.plate, options=options)
            for name, matte in (("binary (logits > 0)", binary), ("sigmoid(logits)", soft),
                                ("refined binary", refined_binary), ("refined sigmoid", refined_soft)):
                rows[name].append(score(matte, scene.alpha, band, tolerance=tolerance))
        print(f"\n{label}:")
        print(f"  {'matte':22s} {'band MAE':>9s} {'boundary F':>11s} {'IoU':>7s}")
        for name, scores in rows.items():
            print(f"  {name:22s} {np.mean([s.band_mae for s in scores]):9.4f} "
                  f"{np.mean([s.boundary_f for s in scores]):11.4f} {np.mean([s.iou for s in scores]):7.4f}")
        base, best = rows["binary (logits > 0)"], rows["refined binary"]
        gain = 1.0 - np.mean([s.band_mae for s in best]) / np.mean([s.band_mae for s in base])
        print(f"  refining the binary mask cuts the band error by {100 * gain:.1f}% and moves boundary F "
              f"from {np.mean([s.boundary_f for s in base]):.3f} to {np.mean([s.boundary_f for s in best]):.3f}")
    print(f"\nrefine_matte time per frame at {args.width}x{args.height}: median {1000 * np.median(times):.1f} ms "
          f"(min {1000 * np.min(times):.1f}, {len(times)} runs, {cv2.getNumThreads()} OpenCV threads)")
    return 0
