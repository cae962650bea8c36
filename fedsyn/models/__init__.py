"""Model zoo: the paper's MLP, AlexNet and CIFAR ResNets, Geiping's ConvNet and the DLG LeNet."""

from .registry import MODEL_NAMES, UnknownModelError, build_model

__all__ = ["MODEL_NAMES", "UnknownModelError", "build_model"]
