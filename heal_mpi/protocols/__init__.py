"""Learning protocols on top of the overlay: each says *what* moves in a round, as steps
(heal_mpi/steps.py); the engine does the rest. Registered in `heal_mpi.registry.PROTOCOLS`."""

from heal_mpi.protocols.base import Protocol

__all__ = ["Protocol"]
