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


def thp_available() -> bool:
    try:
        return "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


def test_importing_heal_mpi_gives_torch_huge_pages_unless_the_environment_says_no():
    """heal_mpi sets THP_MEM_ALLOC_ENABLE=1 before torch allocates (page faults of 4 KB pages cost
    a 10,000-node round a third of its training time); a value already set is kept."""
    code = ("import os, heal_mpi, torch\n"
            "def huge(): return next(int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages:'))\n"
            "seen = os.path.exists('/proc/self/smaps_rollup')\n"
            "before = huge() if seen else 0; x = torch.ones(2**24)\n"
            "print(os.environ['THP_MEM_ALLOC_ENABLE'], huge() - before if seen else -1)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "THP_MEM_ALLOC_ENABLE": "0"}).stdout.split()
    assert on[0] == "1" and off[0] == "0"
    if thp_available() and int(on[1]) >= 0:
        assert int(on[1]) > 0  # kB of the 64 MiB tensor in huge pages
