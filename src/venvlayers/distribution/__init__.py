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

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from .artifact import (
        ARTIFACT_TYPE as ARTIFACT_TYPE,
        CONFIG_TYPE as CONFIG_TYPE,
        ENV_METADATA_TYPE as ENV_METADATA_TYPE,
        INDEX_TYPE as INDEX_TYPE,
        LAYER_TYPES as LAYER_TYPES,
        MANIFEST_TYPE as MANIFEST_TYPE,
        METADATA_TYPE as METADATA_TYPE,
        SIGNATURE_TYPE as SIGNATURE_TYPE,
        Artifact as Artifact,
        Blob as Blob,
        PlatformManifest as PlatformManifest,
        build_artifact as build_artifact,
    )
    from .auth import Credentials as Credentials, find_credentials as find_credentials
    from .pulling import pull as pull
    from .pushing import push as push
    from .reader import StackReader as StackReader, open_stack as open_stack
    from .reference import (
        LayoutReference as LayoutReference,
        Reference as Reference,
        RegistryReference as RegistryReference,
        is_reference as is_reference,
        parse_reference as parse_reference,
    )
    from .results import (
        BlobTransfer as BlobTransfer,
        Fetched as Fetched,
        PullResult as PullResult,
        PushResult as PushResult,
        ResolvedStack as ResolvedStack,
        TransferOptions as TransferOptions,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "artifact": (
            "ARTIFACT_TYPE CONFIG_TYPE ENV_METADATA_TYPE INDEX_TYPE LAYER_TYPES MANIFEST_TYPE "
            "METADATA_TYPE SIGNATURE_TYPE Artifact Blob PlatformManifest build_artifact"
        ),
        "auth": "Credentials find_credentials",
        "pulling": "pull",
        "pushing": "push",
        "reader": "StackReader open_stack",
        "reference": "LayoutReference Reference RegistryReference is_reference parse_reference",
        "results": "BlobTransfer Fetched PullResult PushResult ResolvedStack TransferOptions",
    },
)
