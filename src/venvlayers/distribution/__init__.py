"""OCI registries and OCI image layouts: push, pull, and the fetch side of deploys.

    result = push(Path("_artifacts"), "oci://registry.example/team/stack:1.0")
    result.digest, result.count("sent"), result.count("skipped"), result.bytes_sent

    pull("oci://registry.example/team/stack:1.0", Path("mirror"))   # a published dir

    with open_stack("oci://registry.example/team/stack@sha256:...") as reader:
        stack = reader.resolve(platform="linux_x86_64")   # manifest digest, metadata, sig
        for layer in stack.layers:                        # parsed from stack.metadata
            reader.fetch(stack.layer_blob(layer), dest)   # verified, resumable

References are `oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]` and
`oci-layout:DIR[:TAG]` (a directory, or an `http(s)://` URL serving one). The artifact's
shape and media types are documented in docs/distribution.md; errors are
`DistributionError` with one line naming the reference, blob and fix.
"""

from __future__ import annotations

from ._artifact import (
    ARTIFACT_TYPE,
    CONFIG_TYPE,
    ENV_METADATA_TYPE,
    INDEX_TYPE,
    LAYER_TYPES,
    MANIFEST_TYPE,
    METADATA_TYPE,
    SIGNATURE_TYPE,
    Artifact,
    Blob,
    PlatformManifest,
    build_artifact,
)
from ._auth import Credentials, find_credentials
from ._pull import pull
from ._push import push
from ._reader import StackReader, open_stack
from ._reference import (
    LayoutReference,
    Reference,
    RegistryReference,
    is_reference,
    parse_reference,
)
from ._results import (
    BlobTransfer,
    Fetched,
    PullResult,
    PushResult,
    ResolvedStack,
    TransferOptions,
)

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_TYPE",
    "ENV_METADATA_TYPE",
    "INDEX_TYPE",
    "LAYER_TYPES",
    "MANIFEST_TYPE",
    "METADATA_TYPE",
    "SIGNATURE_TYPE",
    "Artifact",
    "Blob",
    "BlobTransfer",
    "Credentials",
    "Fetched",
    "LayoutReference",
    "PlatformManifest",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryReference",
    "ResolvedStack",
    "StackReader",
    "TransferOptions",
    "build_artifact",
    "find_credentials",
    "is_reference",
    "open_stack",
    "parse_reference",
    "pull",
    "push",
]
