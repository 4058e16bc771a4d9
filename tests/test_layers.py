"""The house's layers (README, "Layout"): each package imports only from the layers
below it, so there is no import circle. Every ``emu`` import counts, including those
inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

EMU = Path(__file__).resolve().parents[1] / "emu"
# bottom to top; a package may import from a lower rank only
RANKS = {
    "__version__": 0, "qom": 0, "clock": 0, "irq": 0, "host": 0, "memory": 0, "guests": 0,
    "cpu": 1, "devices": 1,
    "migration": 2,
    "machine": 3,
    "monitor": 4,
    "launch": 5,
    "cli": 6, "state_tool": 6,
}


def _package(path: Path) -> str:
    rel = path.relative_to(EMU)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """The emu packages ``path`` imports (``from emu import __version__`` as itself)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "emu":
                out |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("emu.")}
    return out


def test_every_package_imports_only_from_below() -> None:
    upward = []
    for path in sorted(EMU.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == EMU:
            continue
        src = _package(path)
        assert src in RANKS, f"{path}: package {src} has no layer in RANKS"
        for target in _imports(path) - {src}:
            assert target in RANKS, f"{path}: imports emu.{target}, which has no layer"
            if RANKS[target] >= RANKS[src]:
                upward.append(f"{path.relative_to(EMU.parent)} ({src}) imports emu.{target}")
    assert not upward, "\n".join(upward)
