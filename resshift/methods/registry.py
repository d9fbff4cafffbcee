"""Names -> factories for SR methods. Modules register themselves on import."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from resshift.methods.base import SRMethod

MethodFactory = Callable[..., SRMethod]

_FACTORIES: dict[str, MethodFactory] = {}

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


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator: register ``factory(**config) -> SRMethod`` under ``name``."""

    def deco(factory: MethodFactory) -> MethodFactory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"method name {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return deco


def _load_all() -> None:
    for module in _METHOD_MODULES:
        importlib.import_module(module)


def available_methods() -> list[str]:
    """Sorted list of registered method names."""
    _load_all()
    return sorted(_FACTORIES)


def build_method(name: str, **config: object) -> SRMethod:
    """Build a registered method; unknown names raise ``KeyError`` listing the known ones."""
    _load_all()
    if name not in _FACTORIES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](**config)
