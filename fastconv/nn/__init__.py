"""Layers, containers, losses and the homework's model builders."""
from .activation import LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .containers import Sequential
from .conv import Conv2d
from .ensemble import Ensemble
from .linear import Flatten, Linear
from .loss import LOSSES, MarginLoss, MSELoss, NLLLoss, make_loss
from .models import MODELS, build_model
from .module import Module, module_from_config, register_module
from .normalization import BatchNorm2d, ContrastiveNormalization, SubtractiveNormalization
from .pooling import AvgPool2d, LPPool2d, MaxPool2d
from .stochastic import Dropout, RandomAffine, RandomRotation
from ._summary import Summary

__all__ = ["Module", "Sequential", "Ensemble", "Conv2d", "Linear", "Flatten", "MaxPool2d", "LPPool2d",
           "AvgPool2d", "BatchNorm2d",
           "Tanh", "Sigmoid", "ReLU", "Softmax", "LogSoftmax", "Dropout", "RandomRotation",
           "RandomAffine", "SubtractiveNormalization", "ContrastiveNormalization", "NLLLoss",
           "MSELoss", "MarginLoss", "make_loss", "LOSSES", "build_model", "MODELS",
           "module_from_config", "register_module", "Summary"]
