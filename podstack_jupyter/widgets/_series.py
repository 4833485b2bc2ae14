"""Metric series held for the charts, and their downsampling.

A chart never sends a million points to the browser: :func:`min_max_indices` cuts a
series into buckets and keeps each bucket's lowest and highest value (plus the first
and last point), so a spike in one step of a million still shows, and the line drawn
from 2,000 points looks like the line of all of them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Series", "min_max_indices"]


def min_max_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (ascending) of at most ``max_points`` points of ``values`` that keep, for each of
    ``max_points // 2`` equal buckets, its minimum and maximum. NaN values are kept out of the
    extremes unless a whole bucket is NaN (then it shows as a gap)."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // 2)
    size = -(-n // buckets)  # ceil
    full = (n // size) * size
    nan = np.isnan(values)
    low = np.where(nan, np.inf, values)
    high = np.where(nan, -np.inf, values)
    parts = [np.array([0, n - 1])]
    if full:
        offsets = np.arange(0, full, size)
        parts.append(offsets + low[:full].reshape(-1, size).argmin(axis=1))
        parts.append(offsets + high[:full].reshape(-1, size).argmax(axis=1))
    if full < n:
        parts.append(np.array([full + int(low[full:].argmin()), full + int(high[full:].argmax())]))
    return np.unique(np.concatenate(parts))


class Series:
    """The points of one metric of one run: steps, values and timestamps as growable float64
    arrays (appending is amortised O(1); the arrays are views, never copied to read)."""

    __slots__ = ("run_id", "key", "_steps", "_values", "_times", "n")

    def __init__(self, run_id: str, key: str, capacity: int = 1024):
        self.run_id, self.key = run_id, key
        self._steps = np.empty(capacity)
        self._values = np.empty(capacity)
        self._times = np.empty(capacity)
        self.n = 0

    def extend(self, steps, values, times) -> None:
        count = len(values)
        if self.n + count > len(self._values):
            capacity = max(2 * len(self._values), self.n + count)
            for name in ("_steps", "_values", "_times"):
                grown = np.empty(capacity)
                grown[:self.n] = getattr(self, name)[:self.n]
                setattr(self, name, grown)
        end = self.n + count
        self._steps[self.n:end] = steps
        self._values[self.n:end] = values
        self._times[self.n:end] = times
        self.n = end

    def replace(self, steps, values, times) -> None:
        self.n = 0
        self.extend(steps, values, times)

    @property
    def steps(self) -> np.ndarray:
        return self._steps[:self.n]

    @property
    def values(self) -> np.ndarray:
        return self._values[:self.n]

    @property
    def times(self) -> np.ndarray:
        return self._times[:self.n]

    def downsampled(self, max_points: int, x_range: tuple | None = None, by: str = "step"):
        """``(steps, values, times)`` of at most ``max_points`` points (inside ``x_range`` of the
        ``by`` axis, ``"step"`` or ``"time"``, if given), keeping each bucket's min and max."""
        steps, values, times = self.steps, self.values, self.times
        if x_range is not None:
            axis = steps if by == "step" else times
            inside = np.flatnonzero((axis >= x_range[0]) & (axis <= x_range[1]))
            if len(inside):  # one point beyond each edge so the line reaches the frame
                first, last = max(0, inside[0] - 1), min(self.n, inside[-1] + 2)
                steps, values, times = steps[first:last], values[first:last], times[first:last]
            else:
                steps, values, times = steps[:0], values[:0], times[:0]
        keep = min_max_indices(values, max_points)
        if len(keep) == len(values):
            return steps.copy(), values.copy(), times.copy()
        return steps[keep], values[keep], times[keep]
