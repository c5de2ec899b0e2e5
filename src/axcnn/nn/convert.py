"""``convert_(model, plan)``: turn a model's Conv2d/Linear layers into approximate layers in place.

A :class:`ConversionPlan` says which mode, operand format and LUT each layer gets: a default
LUT, per-layer LUTs by name pattern (``fnmatch``; the first matching pattern wins), layers kept
at another mode by pattern, the first/last converted layer kept at another mode (the seed's
``--zone`` is ``first_layer=Mode.QUANTIZED``: exact products in the first layer), and whether
Linear layers are included (the seed approximates convolutions only). Each distinct LUT is
loaded and validated once. Converting an already converted model reconfigures it in place and
keeps its observers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from torch import nn

from ..errors import ConfigError
from ..lut import DEFAULT_WINDOW, MultiplierLUT, load_lut
from ..ops import Backend, GradRule
from ..quant import QuantSpec
from .layers import ApproxConv2d, ApproxLinear, Mode


@dataclass
class ConversionPlan:
    mode: Mode = Mode.QUANTIZED
    spec: QuantSpec = field(default_factory=QuantSpec)
    lut: MultiplierLUT | str | None = None
    layer_luts: dict[str, MultiplierLUT | str] = field(default_factory=dict)
    layer_modes: dict[str, Mode] = field(default_factory=dict)
    first_layer: Mode | None = None
    last_layer: Mode | None = None
    include_linear: bool = False
    grad_rule: GradRule = GradRule.STE
    backend: Backend = Backend.AUTO
    window: int = DEFAULT_WINDOW


def _targets(model: nn.Module, include_linear: bool) -> list[tuple[str, nn.Module]]:
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds) and n]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def convert_(model: nn.Module, plan: ConversionPlan) -> list[dict]:
    """Convert ``model`` in place; returns one summary row per converted layer."""
    targets = _targets(model, plan.include_linear)
    if not targets:
        raise ConfigError("the model has no Conv2d (or Linear) layers to convert")
    cache: dict[str, MultiplierLUT] = {}

    def resolve(lut):
        if lut is None or isinstance(lut, MultiplierLUT):
            return lut
        key = str(lut)
        if key not in cache:
            cache[key] = load_lut(key, signed=plan.spec.signed, bits=plan.spec.a_bits)
        return cache[key]

    rows = []
    for i, (name, module) in enumerate(targets):
        mode = plan.mode
        for pattern, m in plan.layer_modes.items():
            if fnmatch.fnmatchcase(name, pattern):
                mode = Mode.parse(m)
                break
        if i == 0 and plan.first_layer is not None:
            mode = plan.first_layer
        if i == len(targets) - 1 and plan.last_layer is not None:
            mode = plan.last_layer
        lut = None
        if mode is Mode.APPROXIMATE:
            lut = next((v for p, v in plan.layer_luts.items() if fnmatch.fnmatchcase(name, p)),
                       plan.lut)
            lut = resolve(lut)
            if lut is None:
                raise ConfigError(f"layer '{name}' is approximate but the plan gives it no LUT")
        if isinstance(module, (ApproxConv2d, ApproxLinear)):
            layer = module
        else:
            cls = ApproxConv2d if isinstance(module, nn.Conv2d) else ApproxLinear
            layer = cls.from_module(module)
            _replace(model, name, layer)
        layer.layer_name = name
        layer.configure(mode, plan.spec, lut, plan.grad_rule, plan.backend, plan.window)
        rows.append({"layer": name, "type": type(layer).__name__, "mode": mode.value,
                     "lut": lut.name if lut is not None else None})
    unused = [p for p in plan.layer_luts if not any(fnmatch.fnmatchcase(n, p) for n, _ in targets)]
    if unused:
        raise ConfigError(f"layer pattern(s) {unused} match no layer; layers are: "
                          f"{', '.join(n for n, _ in targets)}")
    return rows


def set_mode_(model: nn.Module, mode: Mode) -> None:
    """Switch every approximate layer of ``model`` to ``mode`` (a LUT must be set for APPROXIMATE)."""
    for _, m in model.named_modules():
        if isinstance(m, (ApproxConv2d, ApproxLinear)):
            m.configure(mode, m.spec, None, m.grad_rule, m.backend, m.window)
