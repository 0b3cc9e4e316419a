"""The dependency rules of ARCHITECTURE.md, held by reading the imports of every module."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules_of(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", modules_of("portal"), ids=lambda p: str(p.relative_to(ROOT)))
def test_portal_never_imports_sync_or_sso(path):
    bad = {m for m in imported_modules(path) if m.split(".")[0] in {"sync", "sso", "app"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_plan_never_writes():
    source = "".join(p.read_text() for p in (ROOT / "sync" / "plan").glob("*.py"))
    for verb in ("insert(", "update(", "delete(", ".add(", ".commit(", ".flush("):
        assert f"db.session{verb}" not in source and f"conn{verb}" not in source, verb
    runs = {"sync.apply", "sync.runs", "sync.approval", "sync.report", "sync.revert"}
    for module in (ROOT / "sync" / "plan").glob("*.py"):
        assert not runs & imported_modules(module), module.name


def test_bulk_directory_writes_live_in_apply_only():
    writers = set()
    for path in modules_of("sync"):
        text = path.read_text()
        if "persons_t" in text and ("insert(" in text or ".update(" in text):
            writers.add(path.name)
    assert writers <= {"apply.py"}, writers
