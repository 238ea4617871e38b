"""The engine: how the steps a protocol yields are executed (core.Engine), what they hand back
(results), how rows travel between ranks (routes), where messages are lost or altered (channel),
and the robust rules a receiver may combine rows by (aggregation).

`heal_mpi.engine.channel` is light (no torch, no mpi4py): overlays and the config's tools use it.
`from heal_mpi.engine import Engine` imports the rest on first use.
"""


def __getattr__(name: str):
    if name in ("Engine", "MixResult"):
        from heal_mpi.engine import core, results
        return getattr(core, name, None) or getattr(results, name)
    raise AttributeError(f"module 'heal_mpi.engine' has no attribute {name!r}")
