"""A progress line for long attacks: iteration, loss, elapsed time and ETA, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Prints at most one line every ``interval`` seconds, plus a last one; silent when disabled."""

    def __init__(self, total: int, *, enabled: bool, label: str = "attack", interval: float = 5.0,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.enabled = enabled
        self.label = label
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.last = self.start

    def due(self) -> bool:
        """True when a line should be printed now (callers fetch the loss only then)."""
        return self.enabled and time.perf_counter() - self.last >= self.interval

    def show(self, done: int, loss: float) -> None:
        now = time.perf_counter()
        self.last = now
        elapsed = now - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        eta_text = _clock(eta) if done else "?"
        print(
            f"{self.label}: iteration {done}/{self.total}  loss {loss:.5f}  elapsed {_clock(elapsed)}  eta {eta_text}",
            file=self.stream,
            flush=True,
        )
