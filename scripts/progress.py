"""Progress that reads well in a terminal and in a farm's log.

On a terminal: a tqdm bar. Anywhere else (a render farm, `2> log.txt`, a pipe), a bar would
become one long line of carriage returns, so `LineProgress` prints one plain line every 10 percent
(or every `every` items) and one at the end. `--quiet` shows no progress at all.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress:
    """One line per step: `tracking: 60/289 frames (20%), 3.1 frames/s, about 74 s left`."""

    def __init__(self, desc: str, total: int, *, unit: str = "frame", stream: TextIO | None = None,
                 every: int | None = None) -> None:
        self.desc, self.total, self.unit = desc, max(0, int(total)), unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = max(1, every if every is not None else -(-self.total // 10))
        self.done = 0
        self._next = self.every
        self._started = time.monotonic()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self._next and self.done < self.total:
            self._print()
            while self._next <= self.done:
                self._next += self.every

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print()

    def _print(self) -> None:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        percent = f" ({100 * self.done // self.total}%)" if self.total else ""
        line = f"{self.desc}: {self.done}/{self.total} {self.unit}s{percent}, {rate:.1f} {self.unit}s/s"
        if 0 < self.done < self.total and rate > 0:
            line += f", about {(self.total - self.done) / rate:.0f} s left"
        print(line, file=self.stream, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(desc: str, total: int, *, quiet: bool = False, unit: str = "frame", stream: TextIO | None = None,
             **tqdm_options: Any) -> Any:
    """A progress reporter with `update(n)` and `close()`: nothing when quiet, a tqdm bar on a
    terminal, plain lines otherwise."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return NoProgress()
    if _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream, **tqdm_options)
    return LineProgress(desc, total, unit=unit, stream=stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
