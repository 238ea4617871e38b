"""Statistics over seeds and rounds, NaN-aware: means, sample std, the last valid value, "81.2 ± 0.4"."""

from __future__ import annotations

import warnings

import numpy as np


def nanmean(a: np.ndarray, axis=0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return np.nanmean(a, axis=axis)


def nanstd(a: np.ndarray, axis=0) -> np.ndarray:
    """Sample std (ddof=1) over the non-NaN entries; NaN where fewer than 2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(a, axis=axis, ddof=1)


def last_valid(values: np.ndarray) -> tuple[float, int]:
    """(last non-NaN value, its round counted from 1), or (NaN, 0) when there is none."""
    ok = np.flatnonzero(~np.isnan(values))
    return (float(values[ok[-1]]), int(ok[-1]) + 1) if len(ok) else (float("nan"), 0)


def mean_std_text(values, scale: float = 1.0, digits: int = 1, single_digits: int | None = None) -> str:
    """"81.2 ± 0.4" over the non-NaN values (one value: `single_digits` decimals), "—" when there is none."""
    v = np.asarray([x for x in values if not np.isnan(x)], dtype=np.float64) * scale
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.{digits if single_digits is None else single_digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def size(n: float) -> str:
    """Bytes in binary units, the one convention of every table and figure: "1.5 MiB"; NaN -> "—"."""
    if n != n:
        return "—"
    for unit, bits in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if abs(n) >= 2**bits:
            return f"{n / 2**bits:,.1f} {unit}"
    return f"{n:.0f} B"
