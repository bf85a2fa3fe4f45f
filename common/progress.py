"""Progress of long jobs, one owner for every loop a user waits on (training, evaluation, preprocessing, ...).

On a terminal it is a tqdm bar. Elsewhere (output piped into the demo's log, a file, CI) tqdm would stay
silent, so it writes one whole line at least every INTERVAL seconds instead: the count, the rate and the time
left, also while a single step takes longer than that (a timer thread writes it).
"""
import sys
import threading
import time

from tqdm import tqdm

INTERVAL = 10.0


def bar(iterable=None, total=None, desc="", unit="it", initial=0, leave=True, disable=False, interval=None,
        stream=None, clock=time.monotonic):
    """A tqdm bar on a terminal, else Lines (every ``interval`` s, default INTERVAL); ``disable`` shows nothing
    (e.g. on a rank that is not the chief)."""
    stream = stream or sys.stderr
    interval = interval or INTERVAL
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if disable:
        return tqdm(iterable, total=total, disable=True)
    if stream.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                    dynamic_ncols=True, file=stream)
    return Lines(iterable, total, desc, unit, initial, interval, stream, clock)


def _duration(seconds):
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60) if seconds >= 3600 else \
        "%d:%02d" % (seconds // 60, seconds % 60)


class Lines(object):
    """The part of tqdm's interface the project uses (iteration, update, set_postfix, close, with), written as
    a line per ``interval`` seconds: ``desc: 40/200 steps, 2.51 s/step, 6:41 left, loss=0.8123``."""

    def __init__(self, iterable, total, desc, unit, initial, interval, stream, clock):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.first = initial
        self.interval, self.stream, self.clock = interval, stream, clock
        self.postfix = ""
        self.started = self.written = clock()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._timer = threading.Thread(target=self._beat, name="progress %s" % desc, daemon=True)
        self._timer.start()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def update(self, n=1):
        with self._lock:
            self.n += n
        self._write_if_due()

    def set_postfix(self, **values):
        self.postfix = ", ".join("%s=%s" % item for item in sorted(values.items()))

    def close(self):
        """Stops the timer; a job long enough to have written a line also writes where it ended."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._timer.join()
        with self._lock:
            if self.written != self.started:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def line(self):
        """``desc: n/total units, rate, time left[, postfix]`` as of now."""
        elapsed = self.clock() - self.started
        done = self.n - self.first
        parts = ["%d/%s %ss" % (self.n, "?" if self.total is None else self.total, self.unit)]
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            parts.append("%.2f %ss/s" % (rate, self.unit) if rate >= 1 else "%.2f s/%s" % (1 / rate, self.unit))
            if self.total is not None:
                parts.append("%s left" % _duration(max(self.total - self.n, 0) / rate))
        else:
            parts.append("%s in, none done yet" % _duration(elapsed))
        return "%s: %s" % (self.desc, ", ".join(parts + ([self.postfix] if self.postfix else [])))

    def _write_if_due(self):
        with self._lock:
            now = self.clock()
            if now - self.written < self.interval:
                return
            self.written = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def _beat(self):
        while not self._closed.wait(min(1.0, self.interval / 4.0)):
            self._write_if_due()
