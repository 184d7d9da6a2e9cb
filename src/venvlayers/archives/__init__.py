"""Layer archives: one reproducible writer, one safe extractor.

Publishing calls `write_archive`; deploying calls `verify_file`, then `extract_archive`,
and keeps the returned manifest to check the installed layer later with `verify_tree`.
"""

from __future__ import annotations

from .archive import (
    ArchiveInfo,
    ExtractedLayer,
    ManifestEntry,
    cleanup_partials,
    default_level,
    extract_archive,
    hash_installed_tree,
    verify_file,
    verify_tree,
    write_archive,
)
from .common import DEFAULT_FORMAT, ArchiveFormat

__all__ = [
    "DEFAULT_FORMAT",
    "ArchiveFormat",
    "ArchiveInfo",
    "ExtractedLayer",
    "ManifestEntry",
    "cleanup_partials",
    "default_level",
    "extract_archive",
    "hash_installed_tree",
    "verify_file",
    "verify_tree",
    "write_archive",
]
