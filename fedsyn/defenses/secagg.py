"""Secure aggregation with Flower's SecAgg+ (Bell et al. 2020), as Flower 1.41 provides it.

Flower implements SecAgg+ only for its legacy server API: ``flwr.server.workflow.SecAggPlusWorkflow``
runs one fit round over a ``LegacyContext`` holding a legacy ``flwr.server.strategy.Strategy``, and
the clients need ``flwr.client.mod.secaggplus_mod`` in their ``ClientApp``'s mods. The Message-API
strategies (``flwr.serverapp.strategy``) have no SecAgg+ counterpart in 1.41. A federation with
SecAgg+ therefore runs:

- server: ``ServerApp()`` whose ``@app.main()`` wraps its context in ``LegacyContext(context,
  config=ServerConfig(num_rounds), strategy=<legacy FedAvg subclass>)`` and calls
  ``DefaultWorkflow(fit_workflow=secagg_workflow(cfg))(grid, legacy_context)``;
- clients: ``ClientApp(client_fn=..., mods=client_mods(defense_set))`` whose ``NumPyClient.fit``
  returns the (defended) arrays and the number of examples.

What the server sees: each client clips every value to ``[-clipping_range, clipping_range]``,
quantises it stochastically to ``quantization_range`` levels, multiplies by its ``num_examples``
(over ``max_weight``) and adds pairwise and private masks. The server learns only the unmasked sum;
``aggregate_fit`` then receives every client's ``FitRes`` with ``parameters`` replaced by the same
``num_examples``-weighted mean of the clients' arrays (``num_examples`` and metrics are not hidden).
The attack's target is that mean: for one local step from the same global weights and equal weights,
the mean of K clients' updates is one update computed on the union of their batches (K * B images,
labels the union of the clients' labels); unequal ``num_examples`` weight each client's images by its
share, which the server knows. Flower scales each client by ``num_examples / max_weight`` (default
1000) before quantising, so a client should report at most ``max_weight`` examples. Flower's quantisation draws from NumPy's global RNG, so this step's
rounding (at most ``2 * clipping_range / quantization_range`` per value) is not seeded.
"""

from __future__ import annotations

from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import Mod
from flwr.server.workflow import SecAggPlusWorkflow

from .config import DefenseSet, SecAgg


def secagg_workflow(config: SecAgg, *, timeout: float | None = None) -> SecAggPlusWorkflow:
    """The server-side fit workflow for one SecAgg+ configuration."""
    return SecAggPlusWorkflow(
        num_shares=config.num_shares,
        reconstruction_threshold=config.reconstruction_threshold,
        clipping_range=config.clipping_range,
        quantization_range=config.quantization_range,
        timeout=timeout,
    )


def client_mods(defense_set: DefenseSet) -> list[Mod]:
    """The ``ClientApp`` mods a defense set needs: ``[secaggplus_mod]`` with SecAgg+, else none."""
    return [secaggplus_mod] if defense_set.find(SecAgg) is not None else []

