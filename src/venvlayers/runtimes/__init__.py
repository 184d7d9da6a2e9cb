"""Runtimes: obtaining relocatable CPython archives and unpacking them.

Sources, in the order `obtain_runtime` tries them: an explicit archive named by the spec,
the sha256-keyed cache, `$VENVLAYERS_RUNTIME_MIRROR`, python-build-standalone (through
pbs-installer's release table); `import_runtime` packs a local CPython install instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .cache import (
        CachedRuntime as CachedRuntime,
        PruneResult as PruneResult,
        RuntimeArchive as RuntimeArchive,
        add_runtime_archive as add_runtime_archive,
        list_runtimes as list_runtimes,
        prune_runtimes as prune_runtimes,
        runtime_to_dict as runtime_to_dict,
        runtimes_dir as runtimes_dir,
    )
    from .importing import (
        import_runtime as import_runtime,
    )
    from .obtain import (
        MIRROR_ENV as MIRROR_ENV,
        obtain_runtime as obtain_runtime,
    )
    from .tree import (
        parse_runtime_name as parse_runtime_name,
        runtime_python as runtime_python,
        runtime_python_relpath as runtime_python_relpath,
        unpack_runtime as unpack_runtime,
        unpacked_runtime as unpacked_runtime,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cache": (
            "CachedRuntime PruneResult RuntimeArchive add_runtime_archive "
            "list_runtimes prune_runtimes runtime_to_dict runtimes_dir"
        ),
        "importing": "import_runtime",
        "obtain": "MIRROR_ENV obtain_runtime",
        "tree": (
            "parse_runtime_name runtime_python runtime_python_relpath "
            "unpack_runtime unpacked_runtime"
        ),
    },
)
