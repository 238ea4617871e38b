"""The built-in attacks' specs (heal_mpi.registry.ATTACKS): what each alters.

Light (no mpi4py, no torch): the config loads these specs. Overlay attacks (adversary.kind)
forge Elevator's replies; model attacks (adversary.models) replace every model a Byzantine
node sends. Their options are the flat keys of [adversary] (backward_mode, per_request,
poison_scale); a plug-in attack's own options live in [adversary.<name>].
"""

from __future__ import annotations

from heal_mpi.registry import AttackSpec

ELEVATOR_ATTACK = "heal_mpi.adversary.attacks:ElevatorAttack"
REPLIES = ("cache-reply", "backward-reply")  # backward replies only under adversary.backward_mode != "honest"
POISON = "heal_mpi.adversary.attacks:ModelPoisoner"

PASSIVE = AttackSpec("passive", ELEVATOR_ATTACK, "answers cache requests with an empty cache", "overlay", REPLIES)
ACTIVE = AttackSpec("active", ELEVATOR_ATTACK, "answers with its real cache, one random entry swapped for its own id",
                    "overlay", REPLIES)
NONCOORDINATED = AttackSpec("noncoordinated", ELEVATOR_ATTACK, "as active (byzantine.md A5: no filtering of other "
                            "Byzantines)", "overlay", REPLIES)
COORDINATED = AttackSpec("coordinated", ELEVATOR_ATTACK, "answers with up to c Byzantine ids (all Byzantines know "
                         "each other)", "overlay", REPLIES)
NOISE = AttackSpec("noise", POISON, "sends a Gaussian model (std poison_scale)", "model")
ZERO = AttackSpec("zero", POISON, "sends a model of zeros", "model")
SIGN_FLIP = AttackSpec("sign_flip", POISON, "sends its model before its last training minus poison_scale times "
                       "its honest update since", "model")
