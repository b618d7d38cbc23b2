"""The domain stays pure: it imports only the stdlib, attrs and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nanobot_api

DOMAIN = Path(nanobot_api.__file__).parent / "domain"
ALLOWED_THIRD_PARTY = {"attrs"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module)
    return roots


def test_domain_imports_nothing_but_stdlib_attrs_and_itself() -> None:
    offenders = []
    for path in sorted(DOMAIN.rglob("*.py")):
        for name in imported_roots(path):
            top = name.split(".")[0]
            own_domain = name.startswith("nanobot_api.domain")
            if own_domain or top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY:
                continue
            offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_http_adapter_does_not_import_the_app_layer() -> None:
    http = DOMAIN.parent / "adapters"
    offenders = [
        f"{path.relative_to(http)}: {name}"
        for path in sorted(http.rglob("*.py"))
        for name in imported_roots(path)
        if name.startswith("nanobot_api.app")
    ]
    assert offenders == []


def test_use_cases_leave_adapters_and_frameworks_to_the_wiring() -> None:
    """``app/`` holds use cases; only ``app/wiring/`` (the composition root and
    serving) names adapters, Quart or Hypercorn."""
    app = DOMAIN.parent / "app"
    framework = ("nanobot_api.adapters", "nanobot_api.app.wiring", "quart", "hypercorn")
    # Known, and to go behind a port: the tool box builds jsonschema checkers itself.
    known = {"tools.py: nanobot_api.adapters.tools.json_schema"}
    offenders = [
        f"{path.name}: {name}"
        for path in sorted(app.glob("*.py"))
        for name in imported_roots(path)
        if name.startswith(framework)
    ]
    assert set(offenders) <= known
