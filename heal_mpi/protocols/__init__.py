"""Learning protocols on top of the overlay: each says *what* moves in a round, as steps
(heal_mpi/steps.py); the engine does the rest. Each is registered in
`heal_mpi.registry.PROTOCOLS`; the base class is `heal_mpi.protocols.base.Protocol`.
This package imports nothing itself, so the config can read `params` without NumPy."""
