"""Super-resolution methods behind one interface, and the registry of their names."""

from resshift.methods.base import SRMethod
from resshift.methods.registry import available_methods, build_method, register_method

__all__ = ["SRMethod", "available_methods", "build_method", "register_method"]
