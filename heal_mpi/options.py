"""`opt`: one config field with its default, one-line doc and allowed values.

Lives apart from config.py so that the modules the config is built from (fault events,
protocol parameters) can declare their own fields without importing the config.
"""

from __future__ import annotations

from dataclasses import field


def opt(default, doc: str, *, choices=None, lo=None, hi=None, lo_open=False):
    """A config field: default, one-line doc, and its allowed values."""
    meta = {"doc": doc, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)
