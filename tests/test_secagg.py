"""SecAgg+ through Flower's own simulation: the server's strategy only ever sees the clients' mean; and
the attack's model of such a mean (``attacks.LocalUpdate(clients=K)``).
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

from flwr.app import ConfigRecord, Message, Metadata, RecordDict  # noqa: E402
from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.common import Context, parameters_to_ndarrays  # noqa: E402
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS  # noqa: E402
from flwr.server import LegacyContext, ServerApp, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from attacks import LocalUpdate  # noqa: E402
from attacks.unroll import unrolled_update  # noqa: E402
from fedsyn.defenses.config import SecAgg  # noqa: E402
from fedsyn.defenses.secagg import secagg_route, secagg_workflow  # noqa: E402
from fedsyn.models import build_model  # noqa: E402

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


def test_route_passes_plain_messages_straight_on() -> None:
    """Only messages carrying Flower's ``secaggplus_configs`` record reach ``secaggplus_mod`` (which would
    refuse a plain train message: it has no protocol stage)."""
    def train_message(content: RecordDict) -> Message:
        metadata = Metadata(
            run_id=1, message_id="m", src_node_id=1, dst_node_id=2, reply_to_message_id="",
            group_id="1", created_at=0.0, ttl=60.0, message_type="train",
        )
        return Message(content=content, metadata=metadata)

    plain = train_message(RecordDict({"config": ConfigRecord({"server-round": 1})}))
    staged = train_message(RecordDict({RECORD_KEY_CONFIGS: ConfigRecord({"stage": "collect_masked_vectors"})}))
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    handled: list[Message] = []

    def handler(message: Message, _: Context) -> Message:
        handled.append(message)
        return message

    assert secagg_route(plain, context, handler) is plain and handled == [plain]
    with pytest.raises(ValueError, match="expect setup stage"):  # secaggplus_mod's check, before any handler
        secagg_route(staged, context, handler)
    assert handled == [plain]
    with pytest.raises(ValueError, match="num_shares"):
        SecAgg(type="secagg", num_shares=5, reconstruction_threshold=3).check_clients(4)


def test_unrolled_aggregate_is_the_mean_of_the_clients_local_trainings() -> None:
    """``LocalUpdate(clients=K)``: each client trains from the same weights on its consecutive share of
    the images; the aggregate is the mean of the K updates. Checked against plain autograd SGD."""
    model = build_model("lenet", 10, seed=0).eval()
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 1, 1, 7, 2])
    params = {name: p.detach() for name, p in model.named_parameters()}
    update = LocalUpdate(steps=2, lr=0.1, batch_size=1, clients=3)
    expected = {name: torch.zeros_like(p) for name, p in params.items()}
    for client in range(3):
        local = copy.deepcopy(model)
        optimizer = torch.optim.SGD(local.parameters(), lr=0.1)
        for step in range(2):
            index = slice(2 * client + step, 2 * client + step + 1)
            optimizer.zero_grad()
            F.cross_entropy(local(images[index]), labels[index]).backward()
            optimizer.step()
        for name, p in local.named_parameters():
            expected[name] += (p.detach() - params[name]) / 3
    got = unrolled_update(model, params, images, labels, update)
    for name in params:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)

    # One local step: the mean of the clients' steps is the step on the gradient of all their images.
    one_step = unrolled_update(model, params, images, labels, LocalUpdate(steps=1, lr=0.1, batch_size=2, clients=3))
    gradient = torch.autograd.grad(F.cross_entropy(model(images), labels), list(model.parameters()))
    for (name, _), g in zip(model.named_parameters(), gradient):
        torch.testing.assert_close(one_step[name], -0.1 * g, rtol=1e-5, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="do not split into 4 equal client shares"):
        unrolled_update(model, params, images, labels, LocalUpdate(steps=1, lr=0.1, batch_size=1, clients=4))


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

    client = ClientApp(client_fn=client_fn, mods=[secagg_route])
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
