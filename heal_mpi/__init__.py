"""heal_mpi: an MPI-parallel simulator of decentralized learning (HEAL, FedAvg, Gaia, Gossip, Epidemic)."""

__version__ = "0.1.0"
