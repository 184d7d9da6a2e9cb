"""Runtimes: obtaining relocatable CPython archives and unpacking them.

Sources, in the order `obtain_runtime` tries them: an explicit archive named by the spec,
the sha256-keyed cache, `$VENVLAYERS_RUNTIME_MIRROR`, python-build-standalone (through
pbs-installer's release table); `import_runtime` packs a local CPython install instead.
"""

from __future__ import annotations

from .cache import (
    CachedRuntime,
    PruneResult,
    RuntimeArchive,
    add_runtime_archive,
    list_runtimes,
    prune_runtimes,
    runtime_to_dict,
    runtimes_dir,
)
from .importing import import_runtime
from .obtain import MIRROR_ENV, obtain_runtime
from .tree import (
    parse_runtime_name,
    runtime_python,
    runtime_python_relpath,
    unpack_runtime,
    unpacked_runtime,
)

__all__ = [
    "MIRROR_ENV",
    "CachedRuntime",
    "PruneResult",
    "RuntimeArchive",
    "add_runtime_archive",
    "import_runtime",
    "list_runtimes",
    "obtain_runtime",
    "parse_runtime_name",
    "prune_runtimes",
    "runtime_python",
    "runtime_python_relpath",
    "runtime_to_dict",
    "runtimes_dir",
    "unpack_runtime",
    "unpacked_runtime",
]
