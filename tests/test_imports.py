"""The light modules import neither mpi4py nor torch (config tools, sweeps, protocols and kernels run anywhere)."""

import subprocess
import sys
from pathlib import Path

LIGHT = ["heal_mpi.config", "heal_mpi.rng", "heal_mpi.faults", "heal_mpi.channel", "heal_mpi.steps",
         "heal_mpi.overlay.common", "heal_mpi.overlay.elevator_ops", "heal_mpi.learning.datasets",
         "heal_mpi.protocols.hub", "heal_mpi.protocols.gossip", "heal_mpi.protocols.epidemic",
         "heal_mpi.adversary.lift", "heal_mpi.adversary.byzantine", "heal_mpi.adversary.javarandom"]
PRESET = Path(__file__).resolve().parents[1] / "jobs/configs/heal_paper/lenet_fmnist.toml"


STDLIB = ["heal_mpi.config", "heal_mpi.registry", "heal_mpi.fault_events", "heal_mpi.protocols.params"]


def test_config_and_registries_are_plain_stdlib():
    """jobs/sweep.py expands specs on any python3, without NumPy."""
    code = ("import sys, importlib\n"
            f"for m in {STDLIB!r}: importlib.import_module(m)\n"
            "print(','.join(sorted(m for m in ('numpy', 'mpi4py', 'torch') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_light_modules_import_neither_mpi_nor_torch():
    code = ("import sys, importlib\n"
            f"for m in {LIGHT!r}: importlib.import_module(m)\n"
            "from heal_mpi import config\n"
            f"config.validate(config.load({str(PRESET)!r}), check_files=True)\n"
            "heavy = sorted(m for m in ('mpi4py', 'torch') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
