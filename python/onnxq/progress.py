"""Progress reporting for long onnxq calls: bars (tqdm when installed, a plain one otherwise) and a
callback API.

A callback is ``callback(stage: str, done: int, total: int)``; returning ``False`` cancels the
call, which then raises ``onnxq.CancelledError`` (a ``KeyboardInterrupt``). Ctrl-C during a call
cancels it the same way.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, List, Optional, TextIO, Union

Callback = Callable[[str, int, int], Optional[bool]]
ProgressArg = Union[bool, None, str, Callback]


class PlainBar:
    """A one-line text bar on a stream, redrawn at most every 0.1 s (no dependencies)."""

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.stage: Optional[str] = None
        self._last = 0.0
        self._t0 = time.monotonic()

    def update(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self._end_line()
            self.stage = stage
            self._t0 = time.monotonic()
            self._last = 0.0
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = done / total if total > 0 else 1.0
        fill = int(round(self.width * frac))
        self.stream.write(f"\r{stage:<12} [{'#' * fill}{'.' * (self.width - fill)}] {done}/{total} "
                          f"{now - self._t0:6.1f}s")
        self.stream.flush()

    def _end_line(self) -> None:
        if self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()

    def close(self) -> None:
        self._end_line()
        self.stage = None


class TqdmBar:
    """One tqdm bar per stage."""

    def __init__(self, tqdm_cls):
        self._tqdm = tqdm_cls
        self._bar = None
        self.stage: Optional[str] = None

    def update(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage or self._bar is None:
            self.close()
            self.stage = stage
            self._bar = self._tqdm(total=total, desc=stage, unit="sample", leave=True)
        if self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self.stage = None


def make_bar(kind: Union[bool, str] = True):
    """A bar: kind True/"auto" = tqdm (its notebook widget when available) or the plain bar;
    "tqdm" requires tqdm; "plain" is the plain bar."""
    if kind in (True, "auto", "tqdm"):
        try:
            from tqdm import tqdm
        except ImportError:
            if kind == "tqdm":
                raise
        else:
            try:  # the notebook widget needs ipywidgets; without it tqdm.auto only warns
                import ipywidgets  # noqa: F401
                from tqdm.auto import tqdm
            except ImportError:
                pass
            return TqdmBar(tqdm)
    return PlainBar()


class Reporter:
    """Fans one progress stream out to a bar and user callbacks, and turns a cancel request or
    Ctrl-C into a False return (the C++ flow's cancellation protocol)."""

    def __init__(self, progress: ProgressArg = False, callback: Optional[Callback] = None):
        self.callbacks: List[Callback] = []
        self.bar = None
        if callable(progress) and not isinstance(progress, (bool, str)):
            self.callbacks.append(progress)
        elif progress:
            self.bar = make_bar(progress)
        if callback is not None:
            self.callbacks.append(callback)
        self.cancelled_by: Optional[str] = None  # "callback" or "interrupt"
        self.error: Optional[BaseException] = None

    @property
    def active(self) -> bool:
        return self.bar is not None or bool(self.callbacks)

    def __call__(self, stage: str, done: int, total: int) -> bool:
        """Returns False to cancel. Never raises (it is called from C++)."""
        try:
            if self.bar is not None:
                self.bar.update(stage, int(done), int(total))
            for cb in self.callbacks:
                if cb(stage, int(done), int(total)) is False:
                    self.cancelled_by = "callback"
                    return False
            return True
        except KeyboardInterrupt:
            self.cancelled_by = "interrupt"
            return False
        except BaseException as e:  # re-raised by the caller once C++ has unwound
            self.error = e
            return False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
