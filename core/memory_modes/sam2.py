"""Exact SAM 2: the last six tracked frames enter memory, whatever they hold."""

from __future__ import annotations

from .base import MemoryMode


class Sam2Memory(MemoryMode):
    name = "sam2"
