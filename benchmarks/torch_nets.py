"""The engine's layer specs as PyTorch modules (NCHW), for the optional reference timing."""
from __future__ import annotations

import torch
from torch import nn


def torch_net(spec: list[dict], input_shape: tuple = (28, 28, 1)) -> nn.Sequential:
    """Build ``nn.Sequential`` from an engine layer list; ``input_shape`` is ``(H, W, C)``.

    Flattening is NCHW order (PyTorch's), which changes nothing for timing.
    """
    h, w, c = input_shape
    flat = None  # feature count once flattened
    mods: list[nn.Module] = []
    for cfg in spec:
        kind = cfg["type"]
        if kind == "conv2d":
            k, s, p = cfg["kernel_size"], cfg.get("stride", 1), cfg.get("padding", 0)
            mods.append(nn.Conv2d(c, cfg["filters"], k, stride=s, padding=p,
                                  bias=cfg.get("use_bias", True)))
            c, h, w = cfg["filters"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif kind in ("maxpool2d", "avgpool2d"):
            k = cfg.get("pool_size", 2)
            s = cfg.get("stride") or k
            mods.append((nn.MaxPool2d if kind == "maxpool2d" else nn.AvgPool2d)(k, s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif kind == "flatten":
            mods.append(nn.Flatten())
            flat = h * w * c
        elif kind == "dense":
            mods.append(nn.Linear(flat, cfg["units"], bias=cfg.get("use_bias", True)))
            flat = cfg["units"]
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "tanh":
            mods.append(nn.Tanh())
        elif kind == "sigmoid":
            mods.append(nn.Sigmoid())
        elif kind == "dropout":
            mods.append(nn.Dropout(cfg.get("rate", 0.5)))
        else:
            raise ValueError(f"no PyTorch mapping for layer type {kind!r}")
    return nn.Sequential(*mods)
