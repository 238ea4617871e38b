"""What `heal-mpi info` prints: package, Python, torch, MPI, parallel HDF5, devices."""
from __future__ import annotations

import os
import platform


def mpi_library() -> str:
    """First line of the MPI library's version string (Open MPI pads it with NULs)."""
    from mpi4py import MPI
    return MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()


def cuda_devices() -> list[str]:
    """Names of the CUDA devices torch sees on this host; empty without any."""
    import torch
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def no_cuda_reason() -> str:
    """Why torch sees no CUDA device here, as `heal-mpi info` would show it."""
    import torch
    build = f"torch {torch.__version__} is built without CUDA" if torch.version.cuda is None \
        else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU"
    return f"heal-mpi info: CUDA devices none; {build}"


def single_copy_line() -> str:
    """Whether Open MPI's shared-memory transport may copy a message once here (heal_mpi/single_copy.py)."""
    from heal_mpi import single_copy
    set_to = next((os.environ[v] for v in single_copy.VARIABLES if v in os.environ), None)
    found = "cma (cross-memory attach works here)" if single_copy.works() else \
        "none (cross-memory attach is forbidden here: messages between ranks are copied twice)"
    return found if set_to is None else f"{found}; the environment sets {set_to}"


def describe(model: str | None = None) -> str:
    import h5py
    import numpy
    import torch

    import heal_mpi

    devices = ", ".join(cuda_devices()) or "none"
    lines = [
        f"heal_mpi        {heal_mpi.__version__}",
        f"python          {platform.python_version()} ({platform.machine()}, {os.cpu_count()} cpus)",
        f"numpy           {numpy.__version__}",
        f"torch           {torch.__version__} (threads {torch.get_num_threads()})",
        f"mpi4py          {__import__('mpi4py').__version__}",
        f"MPI library     {mpi_library()}",
        f"h5py            {h5py.__version__} (HDF5 {h5py.version.hdf5_version})",
        f"parallel HDF5   {'yes' if h5py.get_config().mpi else 'no (rank 0 writes all output)'}",
        f"single copy     {single_copy_line()}",
        f"CUDA devices    {devices}",
    ]
    if model:
        from heal_mpi.learning.models import describe_model
        lines.append(describe_model(model))
    return "\n".join(lines)
