"""Backprop Lab's training engine: NumPy (and SciPy) only, no web imports.

    from engine import Trainer, get_preset
    Trainer(get_preset("mlp"), emit=print).run()
"""
from .datasets import Dataset, DatasetError, list_datasets, load_dataset
from .events import EVENT_TYPES, Event
from .layers import (AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPool2D,
                     Param, ReLU, Sigmoid, Tanh)
from .model import Model
from .presets import PRESETS, apply_overrides, get_preset, preset_info, preset_names
from .spec import SpecError, validate_config, validate_model
from .trainer import Control, Trainer, train
from .bsde import BSDE_PRESETS, BsdeSolver, is_bsde, validate_bsde_run


def validate_run_config(config: dict) -> tuple[dict, dict]:
    """``(normalised config, summary)`` of an image or a bsde run config; ``SpecError`` else."""
    return validate_bsde_run(config) if is_bsde(config) else validate_config(config)


def make_trainer(config: dict, emit=None, control: Control | None = None, **kw):
    """The trainer of a run config: ``Trainer`` (images; ``kw`` such as ``threads`` go to it)
    or ``BsdeSolver``; both take the same ``Control`` and report through ``emit``."""
    if is_bsde(config):
        return BsdeSolver(config, emit=emit, control=control)
    return Trainer(config, emit=emit, control=control, **kw)

__all__ = ["BSDE_PRESETS", "BsdeSolver", "is_bsde", "make_trainer", "validate_run_config",
           "AvgPool2D", "BatchNorm", "Control", "Conv2D", "Dataset", "DatasetError", "Dense",
           "Dropout", "EVENT_TYPES", "Event", "Flatten", "LeakyReLU", "MaxPool2D", "Model",
           "PRESETS", "Param", "ReLU", "Sigmoid", "SpecError", "Tanh", "Trainer",
           "apply_overrides", "get_preset", "list_datasets", "load_dataset", "preset_info",
           "preset_names", "train", "validate_config", "validate_model"]
