"""SecAgg+ through Flower's own simulation: the server's strategy only ever sees the clients' mean."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.common import Context, parameters_to_ndarrays  # noqa: E402
from flwr.server import LegacyContext, ServerApp, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from fedsyn.defenses.config import DefenseSet, SecAgg  # noqa: E402
from fedsyn.defenses.secagg import client_mods, secagg_workflow  # noqa: E402

CLIENTS = 3
SECAGG = SecAgg(type="secagg", num_shares=3, reconstruction_threshold=2)


def client_arrays(partition_id: int) -> list[np.ndarray]:
    rng = np.random.default_rng(partition_id)
    return [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)]


def client_examples(partition_id: int) -> int:
    return 8 * (partition_id + 1)


class FixedClient(NumPyClient):
    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        return client_arrays(self.partition_id), client_examples(self.partition_id), {"pid": self.partition_id}


class RecordingFedAvg(FedAvg):
    """What a malicious server's strategy receives under SecAgg+."""

    def __init__(self, seen: list) -> None:
        super().__init__(fraction_fit=1.0, fraction_evaluate=0.0, min_available_clients=CLIENTS,
                         min_fit_clients=CLIENTS)
        self.seen = seen

    def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
        self.seen.extend(
            (fit.metrics["pid"], fit.num_examples, parameters_to_ndarrays(fit.parameters)) for _, fit in results
        )
        return super().aggregate_fit(server_round, results, failures)


def test_mods_follow_the_defense_set() -> None:
    assert client_mods(DefenseSet()) == []
    assert len(client_mods(DefenseSet(name="sa", steps=(SECAGG,)))) == 1
    with pytest.raises(ValueError, match="num_shares"):
        SecAgg(type="secagg", num_shares=5, reconstruction_threshold=3).check_clients(4)


@pytest.mark.slow  # starts Ray: ~30 s on 2 shared cores
def test_server_sees_only_the_weighted_mean() -> None:
    seen: list = []
    server = ServerApp()

    @server.main()
    def main(grid, context: Context) -> None:  # type: ignore[no-untyped-def]
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=RecordingFedAvg(seen))
        DefaultWorkflow(fit_workflow=secagg_workflow(SECAGG))(grid, legacy)

    def client_fn(context: Context):  # type: ignore[no-untyped-def]
        return FixedClient(int(context.node_config["partition-id"])).to_client()

    client = ClientApp(client_fn=client_fn, mods=client_mods(DefenseSet(name="sa", steps=(SECAGG,))))
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=CLIENTS,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 1}},
    )

    assert sorted(pid for pid, _, _ in seen) == list(range(CLIENTS))
    weights = np.array([client_examples(p) for p in range(CLIENTS)], dtype=np.float64)
    expected = [
        sum(w * a for w, a in zip(weights, layer)) / weights.sum()
        for layer in zip(*(client_arrays(p) for p in range(CLIENTS)))
    ]
    # SecAgg+ quantises each client's weighted arrays (weight = num_examples / max_weight, Flower's
    # default max_weight 1000) to steps of 2 * clipping_range / quantization_range; dividing the sum
    # by the total weight scales each client's rounding error up by 1 / total weight.
    step = 2 * SECAGG.clipping_range / SECAGG.quantization_range
    tolerance = CLIENTS * step / (weights.sum() / 1000.0)
    for pid, examples, arrays in seen:
        assert examples == client_examples(pid)  # the weights travel in the clear
        for got, want, own in zip(arrays, expected, client_arrays(pid)):
            np.testing.assert_allclose(got, want, atol=tolerance)
            assert np.abs(got - own).max() > 0.1  # no client's own arrays reach the strategy
