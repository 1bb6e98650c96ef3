"""scripts/llama_server.py loaded as a module (scripts/ is not a package), for the demo's tests."""

from __future__ import annotations

import importlib.util
from typing import Any

from tests.conftest import REPO


def _load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


llama_server = _load_script("llama_server")
