"""The developer tools in bin/ are scripts outside the runtime package: tests load them from their files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BIN = Path(__file__).resolve().parents[1] / "bin"


def load(name: str) -> ModuleType:
    """bin/<name>.py as a module (registered in sys.modules: dataclasses look their module up)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BIN / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
