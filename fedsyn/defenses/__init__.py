"""Client-side defenses applied to an update before it is sent, and their privacy accounting.

    from fedsyn.defenses import apply_defenses
    defended = apply_defenses(cell.defense, update_tensors, seed=derive_seed(cell.seed, "defense", pid, round))
    defended.tensors, defended.metrics      # e.g. metrics["clip_noise.epsilon"]

DP-SGD acts inside local training (``fedsyn.defenses.dpsgd``, imports Opacus), SecAgg+ in the
transport (``fedsyn.defenses.secagg``, imports Flower); the informed attacker's knowledge is in
``fedsyn.defenses.knowledge``. Import those modules directly: this package stays light because
every config load imports it. ``fedsyn.defenses.registry`` lists every defense (adding one is a module
plus a line there).
"""

from .accounting import analytic_gaussian_epsilon, dpsgd_epsilon, local_dp_epsilon, rdp_epsilon
from .apply import DefendedUpdate, apply_defenses
from .config import DPSGD, ClipNoise, Prune, Quantize, SecAgg
from .defense_set import DefenseSet
from .registry import DEFENSE_TYPES, DEFENSES, Defense, DefenseConfig

__all__ = [
    "DEFENSES",
    "DEFENSE_TYPES",
    "Defense",
    "DPSGD",
    "ClipNoise",
    "DefendedUpdate",
    "DefenseConfig",
    "DefenseSet",
    "Prune",
    "Quantize",
    "SecAgg",
    "analytic_gaussian_epsilon",
    "apply_defenses",
    "dpsgd_epsilon",
    "local_dp_epsilon",
    "rdp_epsilon",
]
