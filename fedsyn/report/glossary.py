"""The words a report reader needs, in short; docs/methods.md has the exact definitions."""

from __future__ import annotations

from .directions import direction_text

METHOD_WORDS: dict[str, str] = {
    "FL": "fuzzy learning rates: every weight trains with its own fixed random learning-rate factor drawn from "
    "U(1 - tau/2, 1 + tau/2), so an update is the gradient scaled entry by entry (seed 001, eqs. 1-2).",
    "WR": "weight rejuvenation: after each local step every weight is re-drawn at random with probability "
    "1 - Phi(|w| / sigma_re), sigma_re = the layer's largest |w| / d_re, so small weights are renewed most "
    "often (seed 001, eqs. 3-4).",
    "WS": "weight splitting: a layer with N outputs computes them and sums them in N/gamma groups, so the next "
    "layer sees only N/gamma distinct units (seed 001, eq. 5).",
    "GRAPES": "gradient modulation by node importance: the error at each hidden unit is multiplied by "
    "max(1, 2 I_n / max I), I_n the sum of the unit's absolute weights (seed 004, eqs. 1-2); optional.",
    "worst case": "per reconstruction target, the most leaked result over the attack methods that applied, "
    "metric by metric: a defense protects only if it withstands every attack in the suite.",
    "trivial reconstruction": "every image replaced by the training split's mean colour; it needs no update, so an "
    "attack that scores no better has recovered nothing.",
}

METRIC_WORDS: dict[str, str] = {
    "psnr": "peak signal-to-noise ratio in dB, peak 1, per image, averaged over the batch; inf for an exact image",
    "ssim": "structural similarity (7x7 window), 1 for an identical image",
    "lpips": "learned perceptual distance (AlexNet features), 0 for an identical image",
    "mse_pct": "the paper's MSE[%]: 100 x squared error / squared norm of the true image",
    "mse": "mean squared error per pixel, images in [0, 1]",
}


def metric_entry(metric: str) -> str:
    return f"{METRIC_WORDS[metric]} ({direction_text(metric)})."
