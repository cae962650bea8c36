"""Live progress of a sweep on stderr: a bar over cells (done/total, failures, elapsed, ETA) and one
summary line per finished cell.

On a terminal the bar redraws in place below the summary lines; elsewhere (a log file, CI) only the
summary lines are written, each carrying the counts and the ETA, so a log read later tells the same story.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from fedsyn.experiment.grid import Cell

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _score_summary(rows: list[dict[str, Any]]) -> str:
    """Mean MSE% and PSNR over a cell's successful attacks, for the summary line."""
    ok = [row for row in rows if row.get("status") == "ok"]
    parts = []
    for name, fmt in (("mse_pct", "{:.1f}"), ("psnr", "{:.2f}")):
        values = [row[name] for row in ok if row.get(name) is not None]
        if values:
            parts.append(f"{name}={fmt.format(sum(values) / len(values))}")
    parts.append(f"attacks={len(ok)}/{len(rows)}")
    return " ".join(parts)


class Progress:
    """Progress of ``total`` cells, ``already_done`` of which were finished by an earlier run."""

    def __init__(self, total: int, already_done: int = 0, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.done = already_done
        self.failed = 0
        self._finished_now = 0
        self._start = time.monotonic()
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._live = enabled and self._stream.isatty()
        self._bar_shown = False
        if enabled and already_done:
            self._line(f"resuming: {already_done}/{total} cells already finished")
        self.refresh()

    def eta_seconds(self) -> float | None:
        """Remaining time extrapolated from this run's pace (parallel workers included); None before any data."""
        if self._finished_now == 0:
            return None
        remaining = self.total - self.done - self.failed
        return (time.monotonic() - self._start) / self._finished_now * remaining

    def status(self) -> str:
        finished = self.done + self.failed
        filled = BAR_WIDTH * finished // self.total if self.total else BAR_WIDTH
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        eta = self.eta_seconds()
        failed = f" ({self.failed} failed)" if self.failed else ""
        eta_text = "?" if eta is None else format_duration(eta)
        elapsed = format_duration(time.monotonic() - self._start)
        return f"[{bar}] {finished}/{self.total} cells{failed}  elapsed {elapsed}  ETA {eta_text}"

    def cell_finished(self, cell: Cell, *, rows: list[dict[str, Any]], seconds: float, accuracy: float | None) -> None:
        self.done += 1
        self._finished_now += 1
        acc = "" if accuracy is None else f" acc={accuracy:.3f}"
        self._summary(cell, f"done  {format_duration(seconds):>6}  {_score_summary(rows)}{acc}")

    def cell_failed(self, cell: Cell, *, error: str, seconds: float) -> None:
        self.failed += 1
        self._finished_now += 1
        lines = [line for line in error.strip().splitlines() if line.strip()]
        self._summary(cell, f"FAILED {format_duration(seconds):>6}  {lines[-1] if lines else 'unknown error'}")

    def _summary(self, cell: Cell, text: str) -> None:
        label = f"{cell.model.label} {cell.trained}ep {cell.combo} [{cell.defense.name}] seed {cell.seed}"
        counts = "" if self._live else f"  | {self.status()}"
        self._line(f"{cell.key} {label}: {text}{counts}")
        self.refresh()

    def _line(self, text: str) -> None:
        if not self._enabled:
            return
        if self._bar_shown:
            self._stream.write("\r\033[K")
            self._bar_shown = False
        self._stream.write(text + "\n")
        self._stream.flush()

    def refresh(self) -> None:
        """Redraw the bar (terminal only): call it now and then so elapsed and ETA stay current."""
        if not self._live:
            return
        self._stream.write("\r\033[K" + self.status())
        self._stream.flush()
        self._bar_shown = True

    def close(self) -> None:
        if self._bar_shown:
            self._stream.write("\n")
            self._stream.flush()
            self._bar_shown = False
        if self._enabled:
            elapsed = format_duration(time.monotonic() - self._start)
            failed = f", {self.failed} failed (run the sweep again to retry them)" if self.failed else ""
            self._stream.write(f"sweep: {self.done}/{self.total} cells finished{failed} in {elapsed}\n")
            self._stream.flush()
