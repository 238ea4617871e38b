"""The light modules import neither mpi4py nor torch: the config (with every kind's spec), the
registries, the sweeps, the protocols and the kernels run anywhere NumPy does."""

import subprocess
import sys
from pathlib import Path

LIGHT = ["heal_mpi.config", "heal_mpi.registry", "heal_mpi.rng", "heal_mpi.faults.schedule", "heal_mpi.faults.events",
         "heal_mpi.engine.channel", "heal_mpi.steps", "heal_mpi.overlay.common", "heal_mpi.overlay.elevator_ops",
         "heal_mpi.overlay.kinds", "heal_mpi.learning.datasets", "heal_mpi.protocols.hub", "heal_mpi.protocols.gossip",
         "heal_mpi.protocols.epidemic", "heal_mpi.adversary.kinds", "heal_mpi.adversary.lift",
         "heal_mpi.adversary.byzantine", "heal_mpi.adversary.javarandom"]
PRESET = Path(__file__).resolve().parents[1] / "jobs/configs/heal_paper/lenet_fmnist.toml"


def test_light_modules_import_neither_mpi_nor_torch():
    """Loading every spec (the config does: `heal-mpi config`, validate, sweeps) stays light too."""
    code = ("import sys, importlib\n"
            f"for m in {LIGHT!r}: importlib.import_module(m)\n"
            "from heal_mpi import config, registry\n"
            f"config.validate(config.load({str(PRESET)!r}), check_files=True)\n"
            "config.reference_markdown()\n"
            "for reg in (registry.PROTOCOLS, registry.OVERLAYS, registry.ATTACKS, registry.FAULTS): reg.specs()\n"
            "heavy = sorted(m for m in ('mpi4py', 'torch') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
