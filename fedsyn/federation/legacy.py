"""Flower's legacy message format, which its SecAgg+ needs (``fedsyn.defenses.secagg``).

A legacy train instruction holds ``fitins.parameters`` (the arrays as an unnamed list,
``flwr.common.Parameters``) and ``fitins.config``; its reply ``fitres.parameters``,
``fitres.num_examples``, ``fitres.metrics`` and a status (``flwr.compat.common.recorddict_compat``).
fedsyn puts every list in the order of the names the protocol expects (``protocol.expected_arrays``:
``state_dict`` order, parameter order for a ``gradient`` reply), and both sides build those names and
shapes from the cell's model, so they agree without the names crossing the protocol.

Every array travels at least 1-d, and the receiver restores the protocol's shapes: Flower 1.41's SecAgg+
unmasking subtracts the clipping offset and divides by the total weight in place on each array, which
does nothing to a 0-d array (NumPy arithmetic on it returns a new scalar), so a scalar buffer such as
BatchNorm's ``num_batches_tracked`` would come out of the aggregate shifted by ``(K - 1) *
clipping_range``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import Message
from flwr.common import Code, FitRes, Parameters, Scalar, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

FIT_PARAMETERS = "fitins.parameters"


def is_fit_instruction(message: Message) -> bool:
    """True for a legacy train instruction (what the SecAgg+ workflow sends), False for a Message-API one."""
    return message.has_content() and FIT_PARAMETERS in message.content.array_records


def named_arrays(parameters: Parameters, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The arrays of a legacy list under the protocol's names, in its ``shapes`` (name -> shape, in list
    order); a list of another length or an array of another size is refused with ``ValueError``."""
    arrays = parameters_to_ndarrays(parameters)
    if len(arrays) != len(shapes):
        raise ValueError(f"{len(arrays)} arrays arrived where the protocol expects {len(shapes)}")
    named: dict[str, np.ndarray] = {}
    for (name, shape), array in zip(shapes.items(), arrays):
        if array.size != math.prod(shape):
            raise ValueError(f"array {name} arrived with shape {array.shape}, the protocol expects {shape}")
        named[name] = array.reshape(shape)
    return named


def unnamed(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> Parameters:
    """The legacy list of ``arrays`` in the order of ``names``, every array at least 1-d."""
    return ndarrays_to_parameters([np.atleast_1d(np.asarray(arrays[name])) for name in names])


def fit_instruction(message: Message) -> tuple[Parameters, dict[str, Scalar]]:
    """The global arrays and the config of a legacy train instruction."""
    fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
    return fitins.parameters, fitins.config


def fit_reply(message: Message, parameters: Parameters, num_examples: int, metrics: dict[str, Scalar]) -> Message:
    """The legacy reply to a train instruction."""
    result = FitRes(Status(Code.OK, ""), parameters, num_examples, metrics)
    return Message(compat.fitres_to_recorddict(result, keep_input=False), reply_to=message)
