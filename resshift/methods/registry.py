"""Names -> factories for SR methods, and presets (a method with some parameters fixed).

Each registered factory takes the method's parameter dataclass (:mod:`resshift.methods.params`):
:func:`build_method` validates the keyword configuration against it first, so a misspelt key is an
error naming the method and the key. A :class:`Preset` (e.g. the shipped small models) is a named
method with fixed defaults and shipped weights: data, not code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resshift.methods.base import SRMethod
from resshift.methods.params import MethodParams

MethodFactory = Callable[[Any], SRMethod]

_FACTORIES: dict[str, tuple[type[MethodParams], MethodFactory]] = {}
_PRESETS: dict[str, Preset] = {}

# Modules imported lazily by :func:`build_method` so that they can register their names.
_METHOD_MODULES: tuple[str, ...] = (
    "resshift.methods.bicubic",
    "resshift.methods.resshift_method",
    "resshift.methods.sr3",
    "resshift.methods.ldm_sr",
    "resshift.methods.guided",
    "resshift.methods.resshift_pixel",
    "resshift.methods.small_models",
    "resshift.methods.spandrel_sr",
    "resshift.methods.outputs",
)


@dataclass(frozen=True)
class Preset:
    """A registered name for ``method`` with ``defaults`` (overridable) and, where ``shipped`` names a
    file of :data:`resshift.weights.SHIPPED`, that file as the default ``checkpoint``."""

    name: str
    method: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    shipped: str | None = None


def register_method(name: str, params: type[MethodParams]) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator: register ``factory(params: <params>) -> SRMethod`` under ``name``."""

    def deco(factory: MethodFactory) -> MethodFactory:
        if name in _FACTORIES and _FACTORIES[name][1] is not factory:
            raise ValueError(f"method name {name!r} is registered twice")
        _FACTORIES[name] = (params, factory)
        return factory

    return deco


def register_preset(preset: Preset) -> Preset:
    """Register a preset under its name."""
    if preset.name in _FACTORIES or (preset.name in _PRESETS and _PRESETS[preset.name] != preset):
        raise ValueError(f"method name {preset.name!r} is registered twice")
    _PRESETS[preset.name] = preset
    return preset


def _load_all() -> None:
    for module in _METHOD_MODULES:
        importlib.import_module(module)


def available_methods() -> list[str]:
    """Sorted list of registered method and preset names."""
    _load_all()
    return sorted([*_FACTORIES, *_PRESETS])


def method_params(name: str) -> type[MethodParams]:
    """The parameter dataclass of a registered method or preset."""
    _load_all()
    if name in _PRESETS:
        name = _PRESETS[name].method
    if name not in _FACTORIES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(available_methods())}")
    return _FACTORIES[name][0]


def build_method(name: str, **config: Any) -> SRMethod:
    """Build a registered method or preset; unknown names raise ``KeyError`` listing the known ones,
    unknown parameters :class:`~resshift.methods.params.UnknownParameterError`."""
    _load_all()
    if name in _PRESETS:
        return _build_preset(_PRESETS[name], config)
    if name not in _FACTORIES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(available_methods())}")
    params_cls, factory = _FACTORIES[name]
    return factory(params_cls.from_config(name, config))


def _build_preset(preset: Preset, config: Mapping[str, Any]) -> SRMethod:
    params_cls, factory = _FACTORIES[preset.method]
    merged = {**preset.defaults, **config}
    facts: dict[str, Any] = {"preset": preset.name, "preset_of": preset.method}
    if preset.shipped is not None:
        from resshift.weights.shipped import small_model_path, small_model_record
        from resshift.weights.table import SHIPPED

        if merged.get("checkpoint") is None:
            merged["checkpoint"] = str(small_model_path(preset.shipped))
        facts.update(small_model=preset.shipped, small_model_sha256=SHIPPED[preset.shipped].sha256,
                     small_model_steps=small_model_record(preset.shipped).get("steps"))
    method = factory(params_cls.from_config(preset.name, merged))
    method.name = preset.name
    method.preset = facts
    return method
