"""Frames read and preprocessed ahead of the model on a background thread."""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import torch


class FramePrefetcher:
    """Reads and preprocesses upcoming frames on a background thread, a couple ahead of the model.

    Decoding (PyAV/OpenCV) releases the GIL, so it overlaps with the model's work; at most `ahead`
    frames wait in memory. The consumer calls `advance(idx)` after each frame, used or not.
    """

    def __init__(self, load: "Callable[[int], torch.Tensor]", order: Sequence[int], *, ahead: int = 2) -> None:
        self._load = load
        self._order = list(order)
        self._position = {idx: pos for pos, idx in enumerate(self._order)}
        self._ready: dict[int, torch.Tensor] = {}
        self._failed: set[int] = set()
        self._condition = threading.Condition()
        self._ahead = ahead
        self._consumed = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="samroto-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for position, idx in enumerate(self._order):
            with self._condition:
                while not self._stopped and position >= self._consumed + self._ahead:
                    self._condition.wait()
                if self._stopped:
                    return
                if position < self._consumed:
                    continue  # the consumer went past it already
            try:
                tensor = self._load(idx)
            except Exception:  # the consumer reads the frame itself and reports the error there
                with self._condition:
                    self._failed.add(idx)
                    self._condition.notify_all()
                continue
            with self._condition:
                if self._position[idx] >= self._consumed:
                    self._ready[idx] = tensor
                self._condition.notify_all()

    def take(self, idx: int) -> torch.Tensor | None:
        """The preprocessed frame when it is planned next; None otherwise (the caller reads it itself)."""
        with self._condition:
            position = self._position.get(idx)
            if position is None or not (self._consumed <= position < self._consumed + self._ahead):
                return None
            while idx not in self._ready and idx not in self._failed and not self._stopped:
                self._condition.wait(timeout=60)
            self._failed.discard(idx)
            return self._ready.pop(idx, None)

    def advance(self, idx: int) -> None:
        """The consumer is done with frame `idx` (and everything planned before it)."""
        with self._condition:
            position = self._position.get(idx)
            if position is None:
                return
            self._consumed = max(self._consumed, position + 1)
            for stale in [i for i in self._ready if self._position[i] < self._consumed]:
                del self._ready[stale]
            self._condition.notify_all()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        self._thread.join(timeout=60)
