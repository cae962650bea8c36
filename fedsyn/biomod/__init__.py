"""Synaptic diversity for any torch model: fuzzy learning rates (FL), weight rejuvenation (WR),
weight splitting (WS) and GRAPES error modulation (docs/methods.md).

    model = convert(torch_model, BiomodConfig(fl=True, wr=True, ws=True), seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    handle = attach(optimizer, model)      # FL before each step, WR after steps
    ...  loss.backward(); optimizer.step()  ...
    handle.rejuvenated_last, handle.rejuvenated_total
"""

from .attach import BiomodHandle, attach
from .config import COMBOS, METHODS, BiomodConfig, combo_name, parse_combo
from .convert import convert
from .fuzzy import fuzzy_factors, scale_gradients
from .layers import BioConv2d, BiomodLayer, BioLinear, converted_layers, grapes_factors
from .rejuvenation import redraw_probability, rejuvenate
from .splitting import group_sum

__all__ = [
    "COMBOS",
    "METHODS",
    "BioConv2d",
    "BioLinear",
    "BiomodConfig",
    "BiomodHandle",
    "BiomodLayer",
    "attach",
    "combo_name",
    "convert",
    "converted_layers",
    "fuzzy_factors",
    "grapes_factors",
    "group_sum",
    "parse_combo",
    "redraw_probability",
    "rejuvenate",
    "scale_gradients",
]
