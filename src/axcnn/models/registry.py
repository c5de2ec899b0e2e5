"""The model registry: one table from names (and aliases) to factories.

A factory is a plain function ``fn(num_classes: int, in_channels: int) -> nn.Module``
registered with :func:`register_model`. :func:`create_model` looks a name up (aliases and
case are accepted), fills in the defaults recorded at registration and builds the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from axcnn.errors import ConfigError

ModelFactory = Callable[[int, int], nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it.

    Attributes:
        name: the canonical registry name (e.g. ``"resnet20"``).
        default_dataset: the dataset the model is trained on by default (e.g. ``"cifar10"``).
        input_shape: the expected input as ``(C, H, W)``.
        num_classes: the default number of output classes.
        aliases: other names that resolve to this model.
    """

    name: str
    default_dataset: str
    input_shape: tuple[int, int, int]
    num_classes: int
    aliases: tuple[str, ...] = ()


_FACTORIES: dict[str, ModelFactory] = {}
_INFOS: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}  # every accepted lower-case name -> canonical name


def _normalise(name: str) -> str:
    return str(name).strip().lower()


def register_model(
    name: str,
    *,
    default_dataset: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    aliases: tuple[str, ...] | list[str] = (),
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that registers ``fn(num_classes, in_channels) -> nn.Module`` under ``name``.

    ``aliases`` are extra names that resolve to the same model. Registering a name or alias
    that is already taken raises :class:`ConfigError`.
    """
    canonical = _normalise(name)
    all_names = [canonical] + [_normalise(a) for a in aliases]
    if len(tuple(input_shape)) != 3:
        raise ConfigError(
            f"register_model({name!r}): input_shape {input_shape!r} is not (C, H, W); "
            "pass a 3-tuple such as (3, 32, 32)."
        )

    def decorator(fn: ModelFactory) -> ModelFactory:
        taken = [n for n in all_names if n in _ALIASES and _ALIASES[n] != canonical]
        if taken or canonical in _FACTORIES:
            raise ConfigError(
                f"register_model({name!r}): the name(s) {taken or [canonical]} are already "
                f"registered; choose a name not in {sorted(_ALIASES)}."
            )
        _FACTORIES[canonical] = fn
        _INFOS[canonical] = ModelInfo(
            name=canonical,
            default_dataset=default_dataset,
            input_shape=tuple(int(d) for d in input_shape),  # type: ignore[arg-type]
            num_classes=int(num_classes),
            aliases=tuple(n for n in all_names if n != canonical),
        )
        for n in all_names:
            _ALIASES[n] = canonical
        return fn

    return decorator


def resolve_model_name(name: str) -> str:
    """The canonical name for ``name`` or one of its aliases; ConfigError if unknown."""
    key = _normalise(name)
    if key not in _ALIASES:
        raise ConfigError(
            f"unknown model {name!r}; expected one of {list_models()} "
            f"(aliases: {sorted(a for a in _ALIASES if a not in _FACTORIES)}). "
            "Check the spelling or register the model with axcnn.models.register_model."
        )
    return _ALIASES[key]


def list_models() -> list[str]:
    """The canonical names of every registered model, sorted."""
    return sorted(_FACTORIES)


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a model given by name or alias."""
    return _INFOS[resolve_model_name(name)]


def _positive_int(value: object, what: str, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"create_model({model!r}): {what}={value!r} is not a positive integer; "
            f"pass e.g. {what}=10."
        )
    return value


def create_model(
    name: str, *, num_classes: int | None = None, in_channels: int | None = None
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a registered name or alias (see :func:`list_models`).
        num_classes: output classes; defaults to the model's registered ``num_classes``.
        in_channels: input channels; defaults to the first entry of its ``input_shape``.
    """
    info = model_info(name)
    n_cls = info.num_classes if num_classes is None else num_classes
    in_ch = info.input_shape[0] if in_channels is None else in_channels
    n_cls = _positive_int(n_cls, "num_classes", info.name)
    in_ch = _positive_int(in_ch, "in_channels", info.name)
    return _FACTORIES[info.name](n_cls, in_ch)
