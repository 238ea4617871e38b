"""Adversaries: pure NumPy/torch kernels of the Byzantine overlay nodes, Lift and poisoned models.

Specification: ../shared/reference/byzantine.md. These modules hold kernels only; the
simulator wires them into the overlay, the config and the engine.
"""
