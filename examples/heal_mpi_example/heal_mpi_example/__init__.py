"""An example heal_mpi plug-in. kinds.py holds the specs heal_mpi reads (light: no mpi4py, no torch);
the implementations they name live beside it and are imported only when a run builds them."""
