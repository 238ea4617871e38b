"""heal_mpi: an MPI-parallel simulator of decentralized learning (HEAL, FedAvg, Gaia, Gossip, Epidemic)."""

import os

# Transparent huge pages for torch's CPU tensors of 2 MB and more (torch reads this once, at its
# first allocation, so it is set before torch is imported). A rank's rows, sums and training
# chunks are hundreds of MB, allocated afresh in places every round; faulting them in 4 KB pages
# cost a 10,000-node round a third of its training time on the development VM. Results do not
# change. THP_MEM_ALLOC_ENABLE=0 in the environment keeps 4 KB pages.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
