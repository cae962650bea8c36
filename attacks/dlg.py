"""Deep Leakage from Gradients (Zhu et al. 2019): match the gradient in squared Euclidean distance.

DLG's objective, ``|grad(x) - target|^2``, without an image prior, optimised by the machinery of
:mod:`attacks.inversion` (Adam on the sign of the image gradient in the pixel box, the config's budget
and schedule) rather than DLG's L-BFGS. It is the suite's answer to models on which Inverting
Gradients' cosine is nearly flat: with LeNet's sigmoids the cosine's gradient with respect to the
image is about 1e-8 per pixel, so a TV prior decides every step and the attack only smooths, while the
Euclidean distance keeps the gradients' magnitudes and keeps pulling. No matching-loss floor
(``loss_tol`` 0): the distance scales with the gradient's size, so an absolute floor would stop a model
with small gradients early; the plateau rule and the budget still end the run.
"""

from __future__ import annotations

from .config import AttackConfig


def dlg_config(config: AttackConfig) -> AttackConfig:
    """``config`` with DLG's objective: squared Euclidean distance, no TV, no matching-loss floor."""
    return config.model_copy(update={"objective": "l2", "tv": 0.0, "loss_tol": 0.0})
