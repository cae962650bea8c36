"""The attack suite: every reconstruction method by name, each fed the same :class:`AttackInputs`.

A method is a function ``AttackInputs -> Reconstruction``. One that cannot act on a target (the analytic
attack on a model without a fully connected input layer, say) raises :class:`NotApplicable` with the
reason, and the caller records "not applicable" instead of a number. Adding a method is one module and
one line in :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable

from .analytic import analytic
from .config import AttackConfig
from .dlg import dlg_config
from .imprint import recover as imprint_recover
from .inputs import AttackInputs, NotApplicable
from .inversion import Reconstruction, reconstruct

Method = Callable[[AttackInputs], Reconstruction]


def _inverting_gradients(inputs: AttackInputs) -> Reconstruction:
    """Geiping et al. (2020): optimise images whose gradient (or unrolled update) matches the target."""
    return _optimised(inputs, inputs.config)


def _dlg(inputs: AttackInputs) -> Reconstruction:
    """Zhu et al. (2019): the same optimisation with DLG's Euclidean objective (:mod:`attacks.dlg`)."""
    return _optimised(inputs, dlg_config(inputs.config))


def _optimised(inputs: AttackInputs, config: AttackConfig) -> Reconstruction:
    """:func:`attacks.inversion.reconstruct` on ``inputs`` with ``config``."""
    return reconstruct(
        inputs.model,
        inputs.target,
        num_images=inputs.num_images,
        labels=inputs.labels,
        mean=inputs.mean,
        std=inputs.std,
        config=config,
        update=inputs.update,
        fl_factors=inputs.fl_factors,
        image_shape=inputs.image_shape,
        mask=inputs.mask,
        bn_stats=inputs.bn_stats,
    )


def _imprint(inputs: AttackInputs) -> Reconstruction:
    """Fowl et al. (2022): exact recovery through the imprint block an active server put in the model."""
    try:
        return imprint_recover(
            inputs.model,
            inputs.target,
            num_images=inputs.num_images,
            mean=inputs.mean,
            std=inputs.std,
            fl_factors=inputs.fl_factors,
            mask=inputs.mask,
            image_shape=inputs.image_shape,
            is_update=inputs.update is not None,
        )
    except LookupError as err:
        raise NotApplicable(str(err)) from err


METHODS: dict[str, Method] = {
    "inverting-gradients": _inverting_gradients,
    "dlg": _dlg,
    "analytic": analytic,
    "imprint": _imprint,
}

DEFAULT_METHOD = "inverting-gradients"


def run_method(name: str, inputs: AttackInputs) -> Reconstruction:
    """Run the method called ``name``; raises :class:`NotApplicable` when it cannot act on ``inputs``."""
    if name not in METHODS:
        raise ValueError(f"unknown attack method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](inputs)
