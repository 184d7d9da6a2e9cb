"""Which layer of the stack each imported package came from.

A deployed stack is a set of sibling directories (`cpython-3.11/`, `framework-sklearn/`,
`app-classify/`, ...). Every import path on `sys.path` lies inside one of them, so the
layer a package came from is the directory above its `lib/` (or `Lib/` on Windows).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType


def layer_of(module: ModuleType) -> str:
    """The name of the layer directory `module` was imported from."""
    origin = Path(module.__file__ or "").absolute()
    entries = [Path(p).absolute() for p in sys.path if p]
    owners = [e for e in entries if e in origin.parents]
    if not owners:
        return "?"
    entry = max(owners, key=lambda e: len(e.parts))  # the most specific sys.path entry
    for folder in (entry, *entry.parents):
        if folder.name.lower() == "lib":
            return folder.parent.name
    return entry.name


def report(modules: dict[str, ModuleType]) -> str:
    """One aligned line per module: `  module version  layer`.

    `modules` maps distribution names (for the version) to imported modules; the
    running launch module (`__main__`) is added last, as this application's own code.
    """
    rows = []
    for dist, module in modules.items():
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = getattr(module, "__version__", "")
        rows.append((f"{module.__name__} {version}", layer_of(module)))
    main = sys.modules["__main__"]
    if getattr(main, "__file__", None):
        rows.append((f"{Path(main.__file__).stem} (this app)", layer_of(main)))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {layer}" for label, layer in rows)
