"""The progress display on stderr: one updating line on a terminal, one line per step otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total_estimate: float, steps: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total_estimate = max(total_estimate, 1e-9)
        self.steps = steps
        self.done_steps = 0
        self.done_estimate = 0.0
        self.start = time.monotonic()
        self.steps_start: float | None = None  # set by the first step: setup is not a step
        self._width = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def eta(self) -> float:
        if self.steps_start is None or self.done_estimate <= 0:
            return self.total_estimate
        speed = (time.monotonic() - self.steps_start) / self.done_estimate  # real per estimated second
        return (self.total_estimate - self.done_estimate) * speed

    def _line(self, text: str) -> str:
        return f"[{self.done_steps:>3}/{self.steps} {_clock(self.elapsed())} elapsed, ~{_clock(self.eta())} left] {text}"

    def _write(self, line: str, final: bool) -> None:
        if not self.enabled:
            return
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad + ("\n" if final else ""))
            self._width = 0 if final else len(line)
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()

    def begin(self, text: str) -> None:
        if self.steps_start is None:
            self.steps_start = time.monotonic()
        self._write(self._line(text + " ..."), final=False)

    def end(self, text: str, estimate: float) -> None:
        self.done_steps += 1
        self.done_estimate += estimate
        self._write(self._line(text), final=not self.tty)

    def note(self, text: str) -> None:
        """A message that stays (setup, warnings)."""
        if not self.enabled:
            return
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
