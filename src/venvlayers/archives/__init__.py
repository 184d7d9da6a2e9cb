"""Layer archives: one reproducible writer, one safe extractor.

Publishing calls `write_archive`; deploying calls `verify_file`, then `extract_archive`,
and keeps the returned manifest to check the installed layer later with `verify_tree`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .archive import (
        ArchiveInfo as ArchiveInfo,
        ExtractedLayer as ExtractedLayer,
        ManifestEntry as ManifestEntry,
        cleanup_partials as cleanup_partials,
        default_level as default_level,
        extract_archive as extract_archive,
        hash_installed_tree as hash_installed_tree,
        verify_file as verify_file,
        verify_tree as verify_tree,
        write_archive as write_archive,
    )
    from .common import (
        DEFAULT_FORMAT as DEFAULT_FORMAT,
        ArchiveFormat as ArchiveFormat,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "archive": (
            "ArchiveInfo ExtractedLayer ManifestEntry cleanup_partials "
            "default_level extract_archive hash_installed_tree verify_file "
            "verify_tree write_archive"
        ),
        "common": "DEFAULT_FORMAT ArchiveFormat",
    },
)
