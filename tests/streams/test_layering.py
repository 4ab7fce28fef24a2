"""Imports inside streams/ flow one way: the CLI uses every part; the worker, the trainer and the SDK use
only the Kafka plumbing and the shared settings and errors; none of them uses another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streams

ROOT = Path(streams.__file__).parent
SHARED = {"streams.settings", "streams.errors"}
ALLOWED: dict[str, set[str]] = {
    "streams.settings": set(),
    "streams.errors": set(),
    "streams.kafka": SHARED,
    "streams.worker": SHARED | {"streams.kafka"},
    "streams.trainer": SHARED | {"streams.kafka"},
    "streams.sdk": SHARED | {"streams.kafka"},
    "streams.cli": SHARED | {"streams.kafka", "streams.worker", "streams.trainer", "streams.sdk"},
}


def part_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def imports_of(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        out.append((".".join(p for p in rel.parts if p != "__init__"), path))
    return out


def test_every_module_belongs_to_a_known_part():
    unknown = [name for name, _ in modules() if name != "streams" and part_of(name) not in ALLOWED]
    assert unknown == []


@pytest.mark.parametrize("name,path", modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_imports_flow_one_way(name: str, path: Path):
    if name == "streams":
        return
    part = part_of(name)
    allowed = ALLOWED[part] | {part}
    wrong = [m for m in imports_of(path) if m.startswith("streams.") and part_of(m) not in allowed]
    assert wrong == [], f"{name} may import only {sorted(allowed)}"


def test_the_sdk_needs_no_faust():
    for name, path in modules():
        if part_of(name) == "streams.sdk":
            assert not [m for m in imports_of(path) if m.split(".")[0] in {"faust", "mode"}], name
