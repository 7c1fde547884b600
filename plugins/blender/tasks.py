"""The main-thread task queue: background threads post callables, a Blender timer runs them.

Blender data may only be touched from the main thread, so network threads never do it; they
`post()` a callable and `drain()` runs it on the main thread. In the Blender application a
persistent `bpy.app.timers` timer calls `tick()` (registered by the add-on's `register()`: this
module stays free of bpy); in the `bpy` module (tests, scripts) timers do not fire, so callers
pump `drain()` themselves (`wait_for`).
"""

from __future__ import annotations

import queue
import time
import traceback
from typing import Callable, List, Optional

_queue: "queue.SimpleQueue[Callable[[], None]]" = queue.SimpleQueue()
# long main-thread work cut in steps (a Mask build): each returns True when finished
_chunked: "List[Callable[[float], bool]]" = []

BUSY_INTERVAL = 0.05
"""Seconds between timer ticks while work is arriving."""
IDLE_INTERVAL = 0.25
"""Seconds between ticks when the queue was empty."""
DRAIN_BUDGET = 0.05
"""Seconds one tick may spend running callables before yielding to Blender's UI."""


def post(callback: Callable[[], None]) -> None:
    """Run `callback` on the main thread soon (safe from any thread)."""
    _queue.put(callback)


def pending() -> bool:
    return not _queue.empty() or bool(_chunked)


CHUNK_BUDGET = 0.03
"""Seconds of chunked work per timer tick (the UI stays responsive between chunks)."""


def run_chunked(step: Callable[[float], bool]) -> None:
    """Call `step(budget)` on every tick until it returns True (on the main thread)."""
    _chunked.append(step)


def _run_chunks(budget: float) -> int:
    ran = 0
    for step in list(_chunked):
        ran += 1
        try:
            finished = step(budget)
        except Exception:
            traceback.print_exc()
            finished = True
        if finished and step in _chunked:
            _chunked.remove(step)
    return ran


def drain(budget: Optional[float] = DRAIN_BUDGET) -> int:
    """Run queued callables on the calling (main) thread until the queue is empty or `budget`
    seconds have passed (None: no limit). Returns how many ran. A failing callable is printed
    and does not stop the others."""
    deadline = None if budget is None else time.monotonic() + budget
    count = 0
    while deadline is None or time.monotonic() < deadline:
        try:
            callback = _queue.get_nowait()
        except queue.Empty:
            break
        count += 1
        try:
            callback()
        except Exception:  # one broken callback must not kill the timer
            traceback.print_exc()
    return count


def tick() -> float:
    """The timer function: drain, then ask to be called again soon (never unregisters itself)."""
    ran = drain() + _run_chunks(CHUNK_BUDGET)
    return BUSY_INTERVAL if ran or pending() else IDLE_INTERVAL


def wait_for(done: Callable[[], bool], *, timeout: float = 120.0, poll: float = 0.01) -> bool:
    """Pump the queue on this thread until `done()` is true or `timeout` passes; returns done()."""
    deadline = time.monotonic() + timeout
    while True:
        drain(budget=None)
        _run_chunks(CHUNK_BUDGET)
        if done():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
