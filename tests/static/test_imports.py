"""orchat/ has no import cycle and its wings only import downwards (tests/static/importgraph.py)."""

from __future__ import annotations

from pathlib import Path

from tests.static.importgraph import find_breaches, find_cycle, read_graph, unknown_wings

ORCHAT = Path(__file__).resolve().parents[2] / "orchat"


def test_orchat_has_no_import_cycle() -> None:
    cycle = find_cycle(read_graph(ORCHAT))
    assert cycle == [], "import cycle: " + " -> ".join(cycle)


def test_orchat_wings_import_only_lower_layers() -> None:
    graph = read_graph(ORCHAT)
    assert unknown_wings(graph) == []
    assert find_breaches(graph) == []


def test_the_graph_sees_the_imports_that_exist() -> None:
    graph = read_graph(ORCHAT)
    assert "orchat.wire.transport" in graph["orchat.wire.openrouter"]
    assert "orchat.health.local" in graph["orchat.health.checks"]  # a module-level `from x import y as z`
    assert "orchat.commands.chat" in graph["orchat.cli"]  # a function-level import


def _plant(root: Path, files: dict[str, str]) -> Path:
    package = root / "orchat"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_a_planted_cycle_through_type_checking_and_function_imports_is_named(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "gateway/__init__.py": '"""wing"""',
            "gateway/state.py": "from orchat.gateway import relay\n",
            "gateway/relay.py": "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from orchat.gateway.connection import Client\n",
            "gateway/connection.py": "def f():\n    from . import state\n",
        },
    )
    cycle = find_cycle(read_graph(package))
    assert cycle[0] == cycle[-1] and len(cycle) == 4
    assert set(cycle) == {"orchat.gateway.state", "orchat.gateway.relay", "orchat.gateway.connection"}


def test_a_planted_layering_breach_is_named(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "wire/__init__.py": "",
            "wire/sse.py": "from orchat.errors import x\n",
            "wire/transport.py": "def f():\n    from orchat.chat.turn import run\n",
            "chat/__init__.py": "",
            "chat/turn.py": "from orchat.wire import sse\n",
            "telemetry/__init__.py": "",
            "telemetry/logs.py": "import orchat.wire.sse\n",
        },
    )
    assert find_breaches(read_graph(package)) == [
        "orchat.telemetry.logs (telemetry) imports orchat.wire.sse (wire)",
        "orchat.wire.transport (wire) imports orchat.chat.turn (chat)",
    ]
    assert find_cycle(read_graph(package)) == []


def test_a_new_wing_without_a_rank_is_reported(tmp_path: Path) -> None:
    package = _plant(tmp_path, {"__init__.py": "", "plugins/__init__.py": "", "plugins/loader.py": ""})
    assert unknown_wings(read_graph(package)) == ["orchat.plugins.loader"]
