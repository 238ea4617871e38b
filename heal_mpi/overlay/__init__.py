"""Overlays: who each node knows this round (views, hub lists), one cycle per round.

Every overlay subclasses `base.Overlay` and is registered in `heal_mpi.registry.OVERLAYS`.
This package imports nothing heavy itself, so its pure kernels (`common`, `elevator_ops`)
load without MPI or torch.
"""
