"""The malicious server's tools: gradient inversion, label recovery and scoring. Knows nothing of Flower.

    import attacks
    rec = attacks.reconstruct(model, target, num_images=B, mean=..., std=..., config=attacks.AttackConfig())
    scores = attacks.metrics.score(rec.images, true_images)
"""

from attacks import flops, metrics
from attacks.config import DEFAULT_TV, AttackConfig, LocalUpdate, default_tv
from attacks.inversion import Reconstruction, reconstruct
from attacks.labels import recover_labels
from attacks.methods import DEFAULT_METHOD, METHODS, AttackInputs, NotApplicable, run_method

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "AttackInputs",
    "NotApplicable",
    "run_method",
    "DEFAULT_TV",
    "AttackConfig",
    "LocalUpdate",
    "Reconstruction",
    "default_tv",
    "flops",
    "metrics",
    "reconstruct",
    "recover_labels",
]
