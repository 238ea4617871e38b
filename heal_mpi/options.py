"""`opt`: one config field with its default, one-line doc and allowed values.

Lives apart from the config so that the modules the config is built from (fault events, the
options of protocols, overlays and attacks, in heal_mpi or in a plug-in) can declare their
own fields without importing it. A field's type is its annotation (bool, int, float, str,
a Literal, a union of those, or a list of event dataclasses); the config checks values
against the annotation itself.
"""

from __future__ import annotations

from dataclasses import field


def opt(default, doc: str, *, choices=None, lo=None, hi=None, lo_open=False, kinds=None, also=()):
    """A config field: default, one-line doc, and its allowed values.

    Args:
        choices: the allowed values (a tuple).
        lo, hi, lo_open: the range of a number (lo excluded when lo_open).
        kinds: a heal_mpi.registry.Registry: the value names one of its kinds (or a plug-in's
            "package.module:SPEC"); `also` lists extra allowed names ("none", "auto").
    """
    meta = {"doc": doc, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "kinds": kinds, "also": also}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)
