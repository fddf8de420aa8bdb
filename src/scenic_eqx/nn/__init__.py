"""Equinox modules: layers and the baseline model families, a name registry."""

from ._fully_connected import FullyConnected as FullyConnected
from ._registry import create as create, list_models as list_models
from ._simple_cnn import SimpleCNN as SimpleCNN
