"""Colour: a plate reaches the model the way the artist sees it in the viewer, through OpenColorIO.

SAM 2 was trained on display-referred pictures, so a scene-linear or log plate goes through the same
display and view the host's viewer applies (Nuke's viewer process, Blender's view transform).

`ColourSettings` says how; `resolve_colour` turns it into a `PlateColour` for one plate, which
`apply`s to its pixels. Settings, each optional:

* config: an OCIO config file, a built-in config URI (`ocio://studio-config-latest`,
  `ocio://cg-config-latest`, ...), or `none` (no config: the view is one of the hand-written
  transfer curves below). Default: `$OCIO`, else the built-in ACES studio config. A built-in
  "latest" is recorded under its exact name (`ocio://studio-config-v...`), so a session or a
  sidecar reopens with the same config when OCIO updates its built-ins.
* colorspace: the plate's colourspace (a name, alias or role of the config). Default: what the
  file's header says (`exr_header_colour`: a naming attribute, the ACES container flag or
  chromaticities), else for float plates the config's `scene_linear`
  role (what Nuke assumes of float files); integer plates (PNG, JPEG, DPX, video) without a named
  colourspace are taken as already display-referred and pass untouched.
* display, view: default the config's default display and that display's default view for the
  plate's colourspace.

Without a config (`config="none"`) the view is a curve: `srgb` (default), `rec709` or `linear`,
with `exposure` in stops (`ViewTransform`); the plate keeps its primaries.

Cost: OCIO converts on the CPU, in row bands on every core. The ACES 2.0 output transforms (the
built-in configs' default views) take about half a microsecond of CPU a pixel, some fifteen times
the un-tone-mapped view (`samroto bench read` measures them): a 4K frame is some 4 CPU-seconds.

Errors (`ColourError`, a `ValueError`) say what was asked, where the config came from, and the
names the config has.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "CURVES",
    "DEFAULT_CONFIG",
    "NO_CONFIG",
    "ColourError",
    "ColourSettings",
    "HeaderColour",
    "PlateColour",
    "ViewTransform",
    "chromaticities_colorspace",
    "exr_header_colour",
    "load_config",
    "resolve_colour",
]

DEFAULT_CONFIG = "ocio://studio-config-latest"
NO_CONFIG = "none"
CURVES = ("srgb", "rec709", "linear")
# every settings string has a bound: they come from clients and files
MAX_SETTING_LENGTH = 4096


class ColourError(ValueError):
    """Colour settings that cannot be applied; the message says which and what the config offers."""


# ---------------------------------------------------------------------------------------------
# Hand-written curves (no config)


@dataclass(frozen=True)
class ViewTransform:
    """Scene-linear float pixels to display-referred [0, 1] by a transfer curve, without OCIO.

    Scale by 2**exposure, clip negatives, apply the curve, clip to [0, 1]. Curves: "srgb"
    (IEC 61966-2-1 piecewise curve), "rec709" (ITU-R BT.709 OETF), "linear" (no curve: clip only,
    for plates already display-referred). Primaries are kept: this is not a gamut conversion.
    """

    curve: Literal["srgb", "rec709", "linear"] = "srgb"
    exposure: float = 0.0

    def __post_init__(self) -> None:
        if self.curve not in CURVES:
            raise ColourError(f"view transform curve must be 'srgb', 'rec709' or 'linear', not {self.curve!r}")
        if isinstance(self.exposure, bool) or not isinstance(self.exposure, (int, float)) or not math.isfinite(
            self.exposure
        ):
            raise ColourError(f"view transform exposure must be a finite number of stops, not {self.exposure!r}")

    def apply(self, linear: np.ndarray) -> np.ndarray:
        """linear: H*W*3 float -> H*W*3 float32 in [0, 1]."""
        x = np.asarray(linear, dtype=np.float32)
        if self.exposure:
            x = x * np.float32(2.0**self.exposure)
        # NaN/inf in renders are common enough (bad samples); they must not reach the model
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
        x = np.clip(x, 0.0, 1.0)
        if self.curve == "srgb":
            x = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
        elif self.curve == "rec709":
            x = np.where(x < 0.018, x * 4.5, 1.099 * np.power(x, 0.45) - 0.099)
        return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {"curve": self.curve, "exposure": self.exposure}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ViewTransform:
        unknown = set(spec) - {"curve", "exposure"}
        if unknown:
            raise ColourError(f"unknown view transform settings {sorted(unknown)}; expected 'curve' and 'exposure'")
        return cls(**spec)


# ---------------------------------------------------------------------------------------------
# Settings


_SETTING_KEYS = ("config", "colorspace", "display", "view", "exposure")


@dataclass(frozen=True)
class ColourSettings:
    """How a plate becomes display-referred; None means "the default" (see the module docstring)."""

    config: str | None = None
    colorspace: str | None = None
    display: str | None = None
    view: str | None = None
    exposure: float = 0.0  # stops, for the curves only (config "none")

    def __post_init__(self) -> None:
        for key in ("config", "colorspace", "display", "view"):
            value = getattr(self, key)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_SETTING_LENGTH or "\x00" in value:
                raise ColourError(f"colour setting {key!r} must be a non-empty name or path, got {value!r}")
        if isinstance(self.exposure, bool) or not isinstance(self.exposure, (int, float)) or not math.isfinite(
            self.exposure
        ):
            raise ColourError(f"exposure must be a finite number of stops, not {self.exposure!r}")
        if self.uses_curves:
            if self.colorspace is not None or self.display is not None:
                raise ColourError(
                    "without an OCIO config (config 'none') there is no colourspace or display to choose: "
                    f"only a view curve ({', '.join(CURVES)}) and exposure"
                )
            if self.view is not None and self.view not in CURVES:
                raise ColourError(
                    f"without an OCIO config the view is a curve, one of {list(CURVES)}; not {self.view!r}"
                )
        elif self.exposure:
            raise ColourError("exposure applies to the curves only (config 'none'); an OCIO view shows the plate as is")

    @property
    def uses_curves(self) -> bool:
        return self.config is not None and self.config.lower() == NO_CONFIG

    def merged_over(self, defaults: ColourSettings | None) -> ColourSettings:
        """These settings, with `defaults` filling what these leave open (the worker's or a batch's)."""
        if defaults is None:
            return self
        if self.config is not None and defaults.config is not None and self.config != defaults.config:
            return self  # names from another config mean nothing in this one
        return ColourSettings(
            config=self.config if self.config is not None else defaults.config,
            colorspace=self.colorspace if self.colorspace is not None else defaults.colorspace,
            display=self.display if self.display is not None else defaults.display,
            view=self.view if self.view is not None else defaults.view,
            exposure=self.exposure or defaults.exposure,
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings given (None left out): JSON, msgpack and sidecar form."""
        out: dict[str, Any] = {key: getattr(self, key) for key in ("config", "colorspace", "display", "view")}
        out = {key: value for key, value in out.items() if value is not None}
        if self.exposure:
            out["exposure"] = self.exposure
        return out

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | None) -> ColourSettings:
        """From `to_dict`'s form; the older `{"curve", "exposure"}` form means config "none"."""
        if spec is None:
            return cls()
        if not isinstance(spec, Mapping):
            raise ColourError(f"colour settings must be a mapping, got {type(spec).__name__}")
        if "curve" in spec:
            curve = ViewTransform.from_dict(spec)
            return cls(config=NO_CONFIG, view=curve.curve, exposure=curve.exposure)
        unknown = set(spec) - set(_SETTING_KEYS)
        if unknown:
            raise ColourError(f"unknown colour settings {sorted(unknown)}; expected some of {list(_SETTING_KEYS)}")
        return cls(**{key: spec[key] for key in _SETTING_KEYS if spec.get(key) is not None})

    @classmethod
    def of(cls, value: ColourSettings | ViewTransform | Mapping[str, Any] | None) -> ColourSettings:
        """Settings from any of the forms callers hold."""
        if isinstance(value, ColourSettings):
            return value
        if isinstance(value, ViewTransform):
            return cls(config=NO_CONFIG, view=value.curve, exposure=value.exposure)
        return cls.from_dict(value)


# ---------------------------------------------------------------------------------------------
# Configs


def _ocio() -> Any:
    try:
        import PyOpenColorIO
    except ImportError:
        raise ColourError(
            "colour management needs OpenColorIO: pip install opencolorio (or pass config 'none' for a plain curve)"
        ) from None
    return PyOpenColorIO


@dataclass(frozen=True)
class LoadedConfig:
    """An OCIO config and where it came from (for messages and to reopen the same one)."""

    config: Any  # PyOpenColorIO.Config
    source: str  # the file or URI to load it again; built-in "latest" configs by their exact name
    origin: str  # how it was found: "given", "$OCIO" or "built-in default"

    @property
    def name(self) -> str:
        return str(self.config.getName())


def load_config(source: str | None = None) -> LoadedConfig:
    """The config `source` names (a file or `ocio://` URI), else `$OCIO`, else `DEFAULT_CONFIG`."""
    if source is not None:
        origin = "given"
    elif os.environ.get("OCIO"):
        source, origin = os.environ["OCIO"], "$OCIO"
    else:
        source, origin = DEFAULT_CONFIG, "built-in default"
    if source.lower() == NO_CONFIG:
        raise ColourError("config 'none' has no OCIO config to load")
    return _load_config_cached(source, origin, _stamp(source))


def _stamp(source: str) -> float:
    """The file's modification time, so an edited config is read again."""
    if source.startswith("ocio://"):
        return 0.0
    try:
        return os.stat(source).st_mtime
    except OSError:
        return -1.0


@functools.lru_cache(maxsize=16)
def _load_config_cached(source: str, origin: str, stamp: float) -> LoadedConfig:
    ocio = _ocio()
    where = f"OCIO config {source!r} ({origin})"
    if not source.startswith("ocio://"):
        if not os.path.isfile(source):
            raise ColourError(f"{where}: no such file")
        source = os.path.abspath(source)
    try:
        config = ocio.Config.CreateFromFile(source)
        config.validate()
    except Exception as error:  # OCIO raises its own Exception with the parser's message
        built_in = ", ".join("ocio://" + name for name in _built_in_names())
        hint = f"; built-in configs: {built_in}" if source.startswith("ocio://") else ""
        raise ColourError(f"{where} cannot be used: {error}{hint}") from None
    if source.startswith("ocio://"):
        source = "ocio://" + str(config.getName())  # "latest" pinned to what it is today
    return LoadedConfig(config=config, source=source, origin=origin)


def _built_in_names() -> list[str]:
    registry = _ocio().BuiltinConfigRegistry()
    return [name for name, *_ in registry.getBuiltinConfigs()] + ["cg-config-latest", "studio-config-latest"]


def _colour_space_names(config: Any) -> list[str]:
    return [str(name) for name in config.getColorSpaceNames()]


def _find_colour_space(loaded: LoadedConfig, name: str, what: str) -> str:
    space = loaded.config.getColorSpace(name)  # names, aliases and roles
    if space is None:
        raise ColourError(
            f"{what} {name!r} is not in OCIO config {loaded.name!r} ({loaded.source}, {loaded.origin}); "
            f"it has: {', '.join(_colour_space_names(loaded.config))}"
        )
    return str(space.getName())


# ---------------------------------------------------------------------------------------------
# What a plate's header says


# xy chromaticities (red, green, blue, white) of the linear spaces an EXR header can name, and the
# colour interop IDs that built-in and recent studio configs give those spaces as aliases
_PRIMARIES: dict[str, tuple[tuple[float, float], ...]] = {
    "lin_ap0_scene": ((0.7347, 0.2653), (0.0, 1.0), (0.0001, -0.077), (0.32168, 0.33767)),
    "lin_ap1_scene": ((0.713, 0.293), (0.165, 0.830), (0.128, 0.044), (0.32168, 0.33767)),
    "lin_rec709_scene": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06), (0.3127, 0.3290)),
    "lin_p3d65_scene": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.3127, 0.3290)),
    "lin_rec2020_scene": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), (0.3127, 0.3290)),
}
# the same spaces by their names in the built-in configs, to identify them in any other config
_BUILT_IN_NAMES = {
    "lin_ap0_scene": "ACES2065-1",
    "lin_ap1_scene": "ACEScg",
    "lin_rec709_scene": "Linear Rec.709 (sRGB)",
    "lin_p3d65_scene": "Linear P3-D65",
    "lin_rec2020_scene": "Linear Rec.2020",
}
# EXR string attributes that name a colourspace (OpenImageIO, OCIO-aware writers, interop IDs)
NAME_ATTRIBUTES = ("colorInteropID", "colorSpace", "colorspace", "oiio:ColorSpace", "ocio:colorspace")


def chromaticities_colorspace(chromaticities: Any, tolerance: float = 2e-3) -> str | None:
    """The interop ID of the linear space with these EXR chromaticities (8 numbers), or None."""
    try:
        values = np.asarray(chromaticities, dtype=np.float64).reshape(4, 2)
    except (TypeError, ValueError):
        return None
    for interop_id, primaries in _PRIMARIES.items():
        if np.abs(values - np.asarray(primaries)).max() <= tolerance:
            return interop_id
    return None


@dataclass(frozen=True)
class HeaderColour:
    """What a file header says of its colourspace: a name, or linear primaries, and where it says it."""

    name: str | None = None  # a colourspace name or interop ID
    attribute: str = ""  # which header attribute said so
    unknown_primaries: tuple[float, ...] | None = None  # chromaticities matching no known space


def exr_header_colour(header: Mapping[str, Any]) -> HeaderColour | None:
    """An EXR header's colourspace: a naming attribute, the ACES container flag, or chromaticities."""
    for attribute in NAME_ATTRIBUTES:
        value = header.get(attribute)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value.strip():
            return HeaderColour(name=value.strip(), attribute=attribute)
    if header.get("acesImageContainerFlag") == 1:
        return HeaderColour(name="lin_ap0_scene", attribute="acesImageContainerFlag")
    chromaticities = header.get("chromaticities")
    if chromaticities is not None:
        interop_id = chromaticities_colorspace(chromaticities)
        if interop_id is not None:
            return HeaderColour(name=interop_id, attribute="chromaticities")
        values = tuple(float(v) for v in np.asarray(chromaticities, dtype=np.float64).ravel())
        return HeaderColour(attribute="chromaticities", unknown_primaries=values)
    return None


def _header_colour_space(loaded: LoadedConfig, header: HeaderColour, path: str) -> str:
    """The config's colourspace for what the header says; a clear error when it has none."""
    hint = "pass the plate's colourspace explicitly (--colorspace, or the host's colourspace setting)"
    if header.name is None:
        raise ColourError(
            f"{path!r}: its header's {header.attribute} {list(header.unknown_primaries or ())} match no colourspace "
            f"samroto knows ({', '.join(_BUILT_IN_NAMES.values())}); {hint}"
        )
    space = loaded.config.getColorSpace(header.name)
    if space is not None:
        return str(space.getName())
    built_in = _BUILT_IN_NAMES.get(header.name)
    if built_in is not None:
        found = _identify_built_in(loaded, built_in)
        if found:
            return found
    raise ColourError(
        f"{path!r}: its header names colourspace {header.name!r} ({header.attribute}), which OCIO config "
        f"{loaded.name!r} ({loaded.source}) does not have; {hint}. The config has: "
        f"{', '.join(_colour_space_names(loaded.config))}"
    )


def _identify_built_in(loaded: LoadedConfig, built_in_name: str) -> str | None:
    """The colourspace of any config equal to a built-in config's space, as OCIO identifies it."""
    ocio = _ocio()
    try:
        reference = _load_config_cached("ocio://cg-config-latest", "reference", 0.0).config
        name = ocio.Config.IdentifyBuiltinColorSpace(loaded.config, reference, built_in_name)
    except Exception:  # no equivalent in this config
        return None
    return str(name) if name else None


# ---------------------------------------------------------------------------------------------
# Resolved for one plate


# rows per task when a frame is converted on several threads (OCIO releases the GIL)
_ROWS_PER_TASK = 64


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1)), thread_name_prefix="samroto-ocio")


@dataclass
class PlateColour:
    """Colour settings resolved for one plate: every choice made, and the processor that applies them.

    `settings` names everything explicitly (config source, colourspace, display, view), so a plate
    reopened from them is converted the same way. `colorspace` None: the plate is display-referred
    already (integer pixels pass untouched, floats are clipped to [0, 1]).
    """

    settings: ColourSettings
    config_name: str = ""
    origin: str = ""  # where the colourspace came from: "given", a header attribute, "scene_linear role"
    _processor: Any = field(default=None, repr=False)
    _curve: ViewTransform | None = field(default=None, repr=False)

    @property
    def converts(self) -> bool:
        """Whether pixels are transformed (False: the plate is display-referred already)."""
        return self._curve is not None or self.settings.colorspace is not None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """image: H*W*3 (float, or integer normalised to [0, 1]) -> H*W*3 float32 in [0, 1], as viewed."""
        if image.dtype.kind in "ui":
            x = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
        else:
            x = np.array(image, dtype=np.float32, copy=True, order="C")
        if self._curve is not None:
            return self._curve.apply(x)
        if self.settings.colorspace is None:
            return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        x = np.nan_to_num(x, nan=0.0, posinf=65504.0, neginf=-65504.0)
        self._apply_in_place(x)
        return np.clip(x, 0.0, 1.0, out=x)

    def _apply_in_place(self, x: np.ndarray) -> None:
        cpu = self._processor
        rows = x.shape[0]
        if rows <= _ROWS_PER_TASK or (os.cpu_count() or 1) == 1:
            cpu.applyRGB(x)
            return
        # OCIO releases the GIL while it converts (and its CPU processors are safe to share), so
        # row bands convert in parallel, in place
        bands = [x[start : start + _ROWS_PER_TASK] for start in range(0, rows, _ROWS_PER_TASK)]
        for _ in _pool().map(cpu.applyRGB, bands):
            pass

    def to_dict(self) -> dict[str, Any]:
        return self.settings.to_dict()

    def describe(self) -> str:
        """One line for logs and benchmark reports."""
        s = self.settings
        if self._curve is not None:
            return f"no OCIO config: {self._curve.curve} curve, exposure {self._curve.exposure}"
        if s.colorspace is None:
            return "display-referred plate: passed through"
        return f"{s.colorspace} ({self.origin}) -> {s.display} / {s.view}, OCIO config {self.config_name}"


def resolve_colour(
    settings: ColourSettings | ViewTransform | Mapping[str, Any] | None = None,
    *,
    float_pixels: bool,
    header: HeaderColour | None = None,
    path: str = "",
) -> PlateColour:
    """Every colour choice for one plate made, and checked against the config.

    float_pixels: the plate's samples are float (EXR, float TIFF): scene-linear unless told otherwise.
    header: what the plate's first file says of its colourspace (an explicit colorspace wins over it).
    """
    settings = ColourSettings.of(settings)
    if settings.uses_curves:
        curve = ViewTransform(settings.view or "srgb", settings.exposure)  # type: ignore[arg-type]
        resolved = ColourSettings(config=NO_CONFIG, view=curve.curve, exposure=curve.exposure)
        # integer plates are display-referred: curves only ever applied to float pixels
        return PlateColour(resolved, _curve=curve if float_pixels else None, origin="curve")
    if not (float_pixels or header or settings.colorspace or settings.config or settings.display or settings.view):
        # display-referred integer pixels, nothing asked: no config to load, nothing to convert
        return PlateColour(settings, origin="display-referred")
    loaded = load_config(settings.config)
    if settings.colorspace is not None:
        colorspace, origin = _find_colour_space(loaded, settings.colorspace, "colourspace"), "given"
    elif header is not None:
        colorspace, origin = _header_colour_space(loaded, header, path), f"header {header.attribute}"
    elif float_pixels:
        colorspace, origin = _find_colour_space(loaded, "scene_linear", "role"), "scene_linear role"
    else:
        colorspace, origin = None, "display-referred"
    config = loaded.config
    displays = [str(name) for name in config.getDisplays()]
    display = settings.display or str(config.getDefaultDisplay())
    if display not in displays:
        raise ColourError(
            f"display {display!r} is not in OCIO config {loaded.name!r} ({loaded.source}); "
            f"it has: {', '.join(displays)}"
        )
    views = [str(name) for name in config.getViews(display)]
    # the display's default view for this colourspace (viewing rules), else its plain default
    view = settings.view or (str(config.getDefaultView(display, colorspace)) if colorspace else "")
    view = view or str(config.getDefaultView(display))
    if view not in views:
        raise ColourError(
            f"view {view!r} is not a view of display {display!r} in OCIO config {loaded.name!r}; "
            f"it has: {', '.join(views)}"
        )
    resolved = ColourSettings(config=loaded.source, colorspace=colorspace, display=display, view=view)
    if colorspace is None:
        return PlateColour(resolved, config_name=loaded.name, origin=origin)
    processor = _cpu_processor(loaded, colorspace, display, view)
    return PlateColour(resolved, config_name=loaded.name, origin=origin, _processor=processor)


def _cpu_processor(loaded: LoadedConfig, colorspace: str, display: str, view: str) -> Any:
    ocio = _ocio()
    try:
        processor = loaded.config.getProcessor(colorspace, display, view, ocio.TRANSFORM_DIR_FORWARD)
        return processor.getDefaultCPUProcessor()
    except Exception as error:  # a LUT file the config names is missing, ...
        raise ColourError(
            f"OCIO config {loaded.name!r} ({loaded.source}) cannot convert {colorspace!r} to {display!r} / {view!r}: "
            f"{error}"
        ) from None
