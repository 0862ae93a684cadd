"""The house rules docs/ARCHITECTURE.md states, checked on the tree: module size, loose modules,
where SQL is written, which folder may import which, no import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "appliance"
MAX_LINES = 600
MAX_LOOSE = 8
# SQL is written by the storage layer; the panel's read queries are the one other place.
SQL_ALLOWED = ("appliance/store/", "appliance/panel/queries.py")
SQL = re.compile(r"""["'](\s*)(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|BEGIN|REPLACE)\b""")

# What each folder may import from the package (besides config, types and itself).
LAYERS = {
    "features": set(),
    "capture": {"pipeline", "segment"},
    "segment": {"capture"},
    "emotion": {"features", "capture", "stt"},
    "stt": {"capture"},
    "scoring": set(),
    "store": {"publish"},
    "publish": {"store"},
    "pipeline": {"segment", "emotion", "stt", "scoring", "store", "publish"},
    "ops": {
        "capture",
        "segment",
        "pipeline",
        "store",
        "publish",
        "emotion",
        "stt",
        "features",
        "panel",
        "voip",
        "diarize",
    },
    "voip": {"capture", "pipeline"},
    "diarize": {"features", "capture"},
    "tools": {
        "capture",
        "segment",
        "pipeline",
        "store",
        "publish",
        "emotion",
        "stt",
        "features",
        "scoring",
        "ops",
        "voip",
        "diarize",
    },
    "panel": {"store", "publish", "scoring"},
    "bridge": {"store", "publish", "scoring"},
}
COMMON = {"config", "types", "__init__", "__version__"}


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def folder(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def imports(path: Path) -> set[str]:
    """Top-level names under `appliance.` that a module imports (anywhere in it)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("appliance"):
            parts = node.module.split(".")
            if len(parts) > 1:
                out.add(parts[1])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("appliance."):
                    out.add(a.name.split(".")[1])
    return out


def test_no_module_is_over_600_lines():
    big = {
        str(p.relative_to(ROOT)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


def test_at_most_eight_loose_modules_at_the_top():
    loose = [p.name for p in PKG.glob("*.py")]
    assert len(loose) <= MAX_LOOSE, loose


def test_sql_only_in_the_storage_layer_and_the_panel_read_queries():
    offenders = []
    for p in modules():
        rel = p.relative_to(ROOT).as_posix()
        if rel.startswith(SQL_ALLOWED):
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if SQL.search(line) or "db.execute(" in line or ".conn.execute(" in line:
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert offenders == []


def test_folders_import_only_what_the_architecture_allows():
    bad = []
    for p in modules():
        f = folder(p)
        if f not in LAYERS:
            continue
        for name in imports(p) - COMMON - {f}:
            if name not in LAYERS[f]:
                bad.append(f"{p.relative_to(ROOT)} imports appliance.{name}")
    assert bad == []


def test_no_import_cycles_between_modules():
    names = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in modules()
    }
    graph: dict[str, set[str]] = {}
    for mod, p in names.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module in names:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[mod] = {d for d in deps if d in names and d != mod}
    # Tarjan-free check: depth-first search with colours
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a package importing its own submodules is not a cycle of behaviour
    real = [
        c for c in cycles if not any(c[i].startswith(c[i + 1] + ".") for i in range(len(c) - 1))
    ]
    assert real == []
