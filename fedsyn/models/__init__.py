"""Model zoo: the paper's MLP, AlexNet and CIFAR ResNets, Geiping's ConvNet and the DLG LeNet."""

from .imprint import ImprintModel, ImprintSpec, empirical_thresholds
from .registry import MODEL_NAMES, MODEL_OPTIONS, UnknownModelError, build_model

__all__ = [
    "MODEL_NAMES",
    "MODEL_OPTIONS",
    "ImprintModel",
    "ImprintSpec",
    "UnknownModelError",
    "build_model",
    "empirical_thresholds",
]
