"""Secure aggregation with Flower's SecAgg+ (Bell et al. 2020), as Flower 1.41 provides it.

Flower implements SecAgg+ only for its legacy server API: ``flwr.server.workflow.SecAggPlusWorkflow``
runs one fit round over a ``LegacyContext`` holding a legacy ``flwr.server.strategy.Strategy``, and
the clients need ``flwr.client.mod.secaggplus_mod`` in front of their train handler. The Message-API
strategies (``flwr.serverapp.strategy``) have no SecAgg+ counterpart in 1.41. This module holds the
two Flower pieces; ``fedsyn.federation.secure_server`` and ``fedsyn.federation.client_app`` wire them
into the federation.

What the server sees: each client multiplies its arrays by ``num_examples / max_weight``, clips every
value to ``[-clipping_range, clipping_range]``, quantises it stochastically to ``quantization_range``
levels and adds pairwise and private masks. The server learns only the unmasked sum; ``aggregate_fit``
then receives every client's ``FitRes`` with ``parameters`` replaced by the same
``num_examples``-weighted mean of the clients' arrays (``num_examples`` and metrics are not hidden).
The rounding error of the mean is at most ``2 * clipping_range / quantization_range`` per value divided
by the clients' mean ``num_examples / max_weight``, so fedsyn's clients report equal ``num_examples``
and the server sets ``max_weight`` to that number (no loss of precision, no overflow warning).
Flower's quantisation draws from NumPy's global RNG; fedsyn's clients seed it per round so the same
config gives the same aggregate.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.server.workflow import SecAggPlusWorkflow

from .config import SecAgg

FLOWER_MAX_WEIGHT = 1000.0
"""``SecAggPlusWorkflow``'s default ``max_weight``."""


def secagg_workflow(
    config: SecAgg, *, max_weight: float = FLOWER_MAX_WEIGHT, timeout: float | None = None
) -> SecAggPlusWorkflow:
    """The server-side fit workflow for one SecAgg+ configuration; clients should report at most
    ``max_weight`` examples."""
    return SecAggPlusWorkflow(
        num_shares=config.num_shares,
        reconstruction_threshold=config.reconstruction_threshold,
        max_weight=max_weight,
        clipping_range=config.clipping_range,
        quantization_range=config.quantization_range,
        timeout=timeout,
    )


def secagg_route(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Client mod: the messages of a SecAgg+ round (they carry Flower's ``secaggplus_configs`` config
    record) go through ``secaggplus_mod``, every other message straight on.

    ``secaggplus_mod`` alone fails on a train message without that record, and a ClientApp cannot know
    whether a cell uses SecAgg+ before a message arrives (``flwr run`` builds it without a run config).
    """
    if message.has_content() and RECORD_KEY_CONFIGS in message.content.config_records:
        return secaggplus_mod(message, context, call_next)
    return call_next(message, context)
