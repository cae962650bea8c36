"""The server of a SecAgg+ cell (defense ``secagg``): Flower's legacy SecAgg+ workflow around a capturing
legacy FedAvg.

Flower 1.41 has SecAgg+ only for its legacy server API (``fedsyn.defenses.secagg``), so such a cell runs
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow, evaluate_workflow=ClientEvaluation)`` over a
``LegacyContext`` whose strategy is ``AggregateCapturingFedAvg``. Per round the strategy records what a
SecAgg+ server sees (``fedsyn.evaluation.capture``): the global arrays it sent, one ``masked`` index
entry per client (its metrics travel in the clear) and the aggregate, the clients' mean update, with the
partitions it covers. No client's own arrays ever reach the server, so none are captured. The global
model then steps from the mean as in the plain path (``server_round.next_global``). A mean with wrong
shapes or NaN/Inf is recorded as rejected and the global arrays stay; SecAgg+ keeps the server from
telling which client caused it (a ``faulty_clients`` client's NaN reaches the sum as garbage values).

Evaluation is the plain path's Message-API round (``strategy.EvaluatingFedAvg`` and the clients'
evaluate handler), so a round's test accuracy in ``federation.json`` means the same in both paths.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.common import FitIns, FitRes, Parameters, Scalar
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid

from fedsyn.defenses import SecAgg
from fedsyn.defenses.secagg import secagg_workflow

from fedsyn.evaluation.capture import AGGREGATE_ID
from fedsyn.task.training import LocalHyper

from . import legacy
from .active import ActiveServer
from .protocol import (
    NUM_EXAMPLES,
    PARTITION_ID,
    SECURE_METRICS,
    SERVER_ROUND,
    WEIGHT,
    arrays_problem,
    finite_number,
    train_config,
)
from .server_round import RoundBook, index_entry, next_global, training_summary
from .settings import RunSettings
from .strategy import EvaluatingFedAvg

AGGREGATE_NODE_ID = 0
"""The ``node_id`` of an aggregate's index entry: no single node sent it."""


class AggregateCapturingFedAvg(LegacyFedAvg):
    """Legacy FedAvg over every one of ``clients`` clients that captures each round's SecAgg+ aggregate
    and steps the global arrays from it (see the module docstring).

    ``initial`` holds the starting global arrays in ``state_dict`` order (the order of the legacy lists
    the server sends); ``expected`` the reply names and shapes in reply order.
    """

    def __init__(
        self,
        book: RoundBook,
        *,
        hyper: LocalHyper,
        expected: dict[str, tuple[int, ...]],
        initial: dict[str, np.ndarray],
        clients: int,
        active: ActiveServer,
    ) -> None:
        self.book = book
        self.hyper = hyper
        self.expected = expected
        self.active = active
        self.state_shapes = {name: array.shape for name, array in initial.items()}
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=clients,
            min_evaluate_clients=clients,
            min_available_clients=clients,
            on_fit_config_fn=self._fit_config,
            initial_parameters=legacy.unnamed(initial, list(initial)),
        )

    def _fit_config(self, server_round: int) -> dict[str, Scalar]:
        return {**train_config(self.hyper), **self.active.config(server_round), SERVER_ROUND: server_round}

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        sent = self.active.outgoing(server_round, legacy.named_arrays(parameters, self.state_shapes))
        self.book.begin(server_round, sent)
        self.active.record(server_round, self.book)
        return super().configure_fit(server_round, legacy.unnamed(sent, list(sent)), client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        capture = self.book.capture
        for proxy, fit in results:
            masked = index_entry(
                capture,
                self.hyper,
                round=server_round,
                node_id=int(proxy.node_id),
                metrics=fit.metrics,
                status="masked",
            )
            capture.save_reply(masked, None)
        rejections = [_failure(failure) for failure in failures]
        if not results:
            self.book.trained(accepted=0, rejections=rejections, train_loss=None)
            return None, {}
        metrics = [fit.metrics for _, fit in results]
        mean, problem = self._mean(server_round, results[0][1].parameters, metrics)
        summary = {} if problem else training_summary(metrics, WEIGHT)
        self._record_aggregate(server_round, results, mean, summary, problem)
        if problem is not None:
            self.book.trained(accepted=0, rejections=[*rejections, f"aggregate: {problem}"], train_loss=None)
            return None, {}
        self.book.trained(accepted=len(results), rejections=rejections, train_loss=float(summary["loss"]))
        stepped = self.active.continued(server_round, next_global(self.book.global_arrays, mean, self.hyper))
        return legacy.unnamed(stepped, list(self.state_shapes)), summary

    def _mean(
        self, server_round: int, parameters: Parameters, metrics: list[dict[str, Scalar]]
    ) -> tuple[dict[str, np.ndarray], str | None]:
        """The aggregate under the protocol's names, and why it cannot be used (None: it can)."""
        expected = self.active.expected(server_round, self.expected)
        try:
            mean = legacy.named_arrays(parameters, expected)
        except ValueError as err:
            return {}, f"the aggregate does not fit the protocol: {err}"
        lacking = sorted({key for m in metrics for key in SECURE_METRICS if key not in m})
        if lacking:
            return mean, f"client metrics lack {lacking}: the aggregate cannot be attributed"
        odd = sorted({key for m in metrics for key, value in m.items() if not finite_number(value)})
        if odd:
            return mean, f"client metrics {odd[:5]} are not finite numbers: the aggregate cannot be summarised"
        return mean, arrays_problem(mean, expected)

    def _record_aggregate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        mean: dict[str, np.ndarray],
        summary: dict[str, float | int],
        problem: str | None,
    ) -> None:
        """Index (and, in captured rounds, store) the round's aggregate with the partitions it covers."""
        aggregate = {
            **train_config(self.hyper),
            **summary,
            PARTITION_ID: AGGREGATE_ID,
            NUM_EXAMPLES: sum(fit.num_examples for _, fit in results),
        }
        entry = index_entry(
            self.book.capture,
            self.hyper,
            round=server_round,
            node_id=AGGREGATE_NODE_ID,
            metrics=aggregate,
            status="ok" if problem is None else "rejected",
            reason=problem,
            shapes={name: a.shape for name, a in mean.items()},
            covers=sorted(
                int(fit.metrics[PARTITION_ID]) for _, fit in results if finite_number(fit.metrics.get(PARTITION_ID))
            ),
        )
        tensors = {name: torch.from_numpy(a.copy()) for name, a in mean.items()}
        self.book.capture.save_reply(entry, tensors or None)


def _failure(failure: tuple[ClientProxy, FitRes] | BaseException) -> str:
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}"
    proxy, fit = failure
    return f"node {proxy.node_id}: {fit.status.message}"


class ClientEvaluation:
    """Legacy workflow step: the Message-API evaluate round (``strategy``) on the current global arrays."""

    def __init__(
        self, strategy: EvaluatingFedAvg, state_shapes: dict[str, tuple[int, ...]], timeout: float
    ) -> None:
        self.strategy = strategy
        self.state_shapes = state_shapes
        self.timeout = timeout

    def __call__(self, grid: Grid, context: Context) -> None:
        current_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        parameters = compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
        )
        global_arrays = legacy.named_arrays(parameters, self.state_shapes)
        arrays = ArrayRecord({name: Array(a) for name, a in global_arrays.items()})
        messages = self.strategy.configure_evaluate(current_round, arrays, ConfigRecord(), grid)
        self.strategy.aggregate_evaluate(current_round, grid.send_and_receive(messages, timeout=self.timeout))


def run_secure_federation(
    grid: Grid,
    context: Context,
    settings: RunSettings,
    book: RoundBook,
    *,
    initial: dict[str, np.ndarray],
    expected: dict[str, tuple[int, ...]],
    secagg: SecAgg,
) -> None:
    """Run the cell's rounds with SecAgg+, from the global arrays ``initial`` (``state_dict`` order)."""
    cell = settings.cell
    hyper = LocalHyper.from_cell(cell)
    clients = cell.federation.clients
    strategy = AggregateCapturingFedAvg(
        book, hyper=hyper, expected=expected, initial=initial, clients=clients, active=ActiveServer(cell, hyper.capture)
    )
    evaluating = EvaluatingFedAvg(book, clients=clients)
    evaluation = ClientEvaluation(evaluating, strategy.state_shapes, settings.round_timeout)
    workflow = DefaultWorkflow(
        fit_workflow=secagg_workflow(secagg, max_weight=hyper.images, timeout=settings.round_timeout),
        evaluate_workflow=evaluation,
    )
    workflow(grid, LegacyContext(context, config=ServerConfig(num_rounds=cell.federation.rounds), strategy=strategy))

