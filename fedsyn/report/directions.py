"""Which way each reconstruction metric points (the table itself is ``fedsyn.experiment.names``).

A reconstruction that is far from the true image leaks little: a higher MSE, MSE% or LPIPS distance, or a
lower PSNR, SSIM or label accuracy, means a more private update.
"""

from __future__ import annotations

from fedsyn.experiment.names import HIGHER_IS_PRIVATE


def private_sign(metric: str) -> int:
    """+1 when a higher value of ``metric`` means more privacy, -1 when a lower one does."""
    if metric not in HIGHER_IS_PRIVATE:
        raise ValueError(f"no privacy direction known for metric {metric!r}; allowed: {', '.join(HIGHER_IS_PRIVATE)}")
    return 1 if HIGHER_IS_PRIVATE[metric] else -1


def direction_text(metric: str) -> str:
    """``"higher = more private"`` or ``"lower = more private"``, for legends and glossaries."""
    return f"{'higher' if private_sign(metric) > 0 else 'lower'} = more private"
