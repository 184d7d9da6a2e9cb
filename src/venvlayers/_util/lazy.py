"""Public faces that import their implementation on first use (PEP 562).

Every stage's `__init__.py` names its public API without importing it: the first access
to `venvlayers.deploying.deploy` imports `venvlayers.deploying.operations`, and nothing
else of the stage. This is the one mechanism behind fast start-up: `venvlayers run`
loads only the code that finds and starts an app, `--help` loads no stage at all, and a
script importing `venvlayers` pays for what it calls. The CLI simply imports the faces
at the top of its modules; a stage is imported when its command calls into it.

A face lists each name once, with the module it lives in; a `TYPE_CHECKING` block
imports the same names so type checkers see the real objects, and
`tests/test_api.py` checks the two lists agree and that every name resolves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`(__getattr__, __dir__, __all__)` for `package`, exporting `exports`.

    `exports` maps a module, relative to `package` (`"operations"`, `"..errors"`), to
    the names it provides, separated by white space.
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names.split():
            if name in where:
                raise ValueError(f"{package}: {name!r} is exported twice")
            where[name] = module

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_absolute(package, module)), name)
        # cached in the package, so later lookups do not come back here
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *importlib.import_module(package).__dict__})

    return __getattr__, __dir__, sorted(where)


def _absolute(package: str, module: str) -> str:
    dots = len(module) - len(module.lstrip("."))
    base = package.split(".")
    if dots > 1:
        base = base[: len(base) - (dots - 1)]
    return ".".join([*base, module.lstrip(".")]) if module.lstrip(".") else ".".join(base)
