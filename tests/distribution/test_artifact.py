"""References and the artifact's shape, without a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.published import archives, default_layers, publish_fake
from venvlayers.distribution import (
    ARTIFACT_TYPE,
    CONFIG_TYPE,
    ENV_METADATA_TYPE,
    INDEX_TYPE,
    MANIFEST_TYPE,
    METADATA_TYPE,
    SIGNATURE_TYPE,
    LayoutReference,
    RegistryReference,
    build_artifact,
    is_reference,
    parse_reference,
)
from venvlayers.distribution.artifact import (
    check_against_metadata,
    check_names,
    digest_of,
    encode,
    parse_manifest,
)
from venvlayers.errors import DistributionError
from venvlayers.platforms import build_platform

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "oci://127.0.0.1:5000/team/stack:1.0",
            RegistryReference("127.0.0.1:5000", "team/stack", "1.0"),
        ),
        ("oci://ghcr.io/org/a.b-c_d", RegistryReference("ghcr.io", "org/a.b-c_d")),
        (f"oci://h/r@{DIGEST}", RegistryReference("h", "r", None, DIGEST)),
        (f"oci://h:1/r:t@{DIGEST}", RegistryReference("h:1", "r", "t", DIGEST)),
        ("oci://[::1]:5000/r", RegistryReference("[::1]:5000", "r")),
        ("oci-layout:/srv/layout:v2", LayoutReference(path=Path("/srv/layout"), tag="v2")),
        ("oci-layout:rel/dir", LayoutReference(path=Path("rel/dir"))),
        ("oci-layout:file:///srv/l:t", LayoutReference(path=Path("/srv/l"), tag="t")),
        ("oci-layout:https://h:8443/a/l:v1", LayoutReference(url="https://h:8443/a/l", tag="v1")),
        ("oci-layout:http://127.0.0.1:8080", LayoutReference(url="http://127.0.0.1:8080")),
    ],
)
def test_references_parse(text: str, expected: object) -> None:
    assert parse_reference(text) == expected
    assert is_reference(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("oci://host", "names no repository"),
        ("oci://host/Upper", "is not a repository name"),
        ("oci://host/a//b", "is not a repository name"),
        ("oci://host/a:b:c", "is not a repository name"),
        ("oci://host/a:-bad", "is not a tag"),
        ("oci://host/a@sha256:123", "is not a digest"),
        ("oci://ho st/a", "is not a host name"),
        ("oci-layout:", "names no directory"),
        ("docker://host/a", "is not a stack reference"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(DistributionError, match=problem):
        parse_reference(text)


def test_reference_strings_round_trip() -> None:
    for text in ("oci://h:5/a/b:t", f"oci://h/a@{DIGEST}", "oci-layout:/x/y:t"):
        assert str(parse_reference(text)) == text
    assert parse_reference("oci://h/a").reference == "latest"  # type: ignore[union-attr]


def test_the_artifact_shape(tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("shape"), signature=b"sig\n")
    artifact = build_artifact([out])
    (manifest,) = artifact.manifests
    document = json.loads(manifest.body)
    metadata = (out / "__venvstacks__/venvstacks.json").read_bytes()
    assert document["mediaType"] == MANIFEST_TYPE
    assert document["artifactType"] == ARTIFACT_TYPE
    assert document["config"] == {
        "mediaType": CONFIG_TYPE,
        "digest": digest_of(metadata),
        "size": len(metadata),
    }
    titles = [d["annotations"]["org.opencontainers.image.title"] for d in document["layers"]]
    assert titles == [
        "cpython-3.11.tar.zst",
        "framework-fw.tar.zst",
        "app-one.tar.zst",
        "app-two.tar.zst",
        "__venvstacks__/venvstacks.json",
        "__venvstacks__/env_metadata/cpython-3.11.json",
        "__venvstacks__/env_metadata/framework-fw.json",
        "__venvstacks__/env_metadata/app-one.json",
        "__venvstacks__/env_metadata/app-two.json",
        "__venvstacks__/venvstacks.json.sig",
    ]
    types = [d["mediaType"] for d in document["layers"]]
    assert types[:4] == ["application/vnd.venvlayers.layer.v1.tar+zstd"] * 4
    assert types[4:] == [METADATA_TYPE, *[ENV_METADATA_TYPE] * 4, SIGNATURE_TYPE]
    for descriptor in document["layers"][:4]:
        entry = archives(out)[descriptor["annotations"]["org.opencontainers.image.title"]]
        assert descriptor["digest"] == "sha256:" + entry["archive_hashes"]["sha256"]
        assert descriptor["size"] == entry["archive_size"]
        assert descriptor["annotations"]["org.venvlayers.install_target"] == entry["install_target"]
    assert document["layers"][4]["digest"] == document["config"]["digest"]
    index = json.loads(artifact.index)
    assert index["mediaType"] == INDEX_TYPE and index["artifactType"] == ARTIFACT_TYPE
    assert [m["digest"] for m in index["manifests"]] == [manifest.digest]
    assert index["manifests"][0]["annotations"] == {
        "org.venvlayers.target_platform": str(build_platform())
    }
    assert manifest.body == encode(document)  # canonical: sorted keys, no spaces
    assert artifact.digest == digest_of(artifact.index)
    # the config's digest is the stack's metadata digest; so is one blob, stored once
    assert len(artifact.blobs()) == 10


def test_the_artifact_does_not_depend_on_where_or_when(tmp_path: Path) -> None:
    one = build_artifact([publish_fake(tmp_path / "one", default_layers("when"))])
    two = build_artifact([publish_fake(tmp_path / "elsewhere" / "two", default_layers("when"))])
    assert one.digest == two.digest and one.index == two.index


def test_missing_and_resized_archives_are_reported_together(tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("broken"))
    (out / "app-one.tar.zst").unlink()
    with (out / "app-two.tar.zst").open("ab") as f:
        f.write(b"x")
    with pytest.raises(DistributionError) as caught:
        build_artifact([out])
    message = str(caught.value)
    assert f"{out / 'app-one.tar.zst'} is missing (app-one lists it" in message
    assert "app-two.tar.zst has" in message and "republish it" in message


def test_a_directory_that_is_not_published_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DistributionError, match="is not a published stack"):
        build_artifact([tmp_path])
    with pytest.raises(DistributionError, match="no output directory"):
        build_artifact([])


def test_a_manifest_that_disagrees_with_its_metadata_is_refused(tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("disagree"))
    (manifest,) = build_artifact([out]).manifests
    metadata = (out / "__venvstacks__/venvstacks.json").read_bytes()
    document = json.loads(manifest.body)
    document["layers"][2]["digest"] = DIGEST  # app-one swapped for something else
    body = encode(document)
    parsed = parse_manifest(body, digest_of(body), "the registry")
    with pytest.raises(
        DistributionError, match=r"app-one\.tar\.zst: the manifest and venvstacks\.json"
    ):
        check_against_metadata(parsed, metadata, "the registry")
    del document["layers"][3]
    body = encode(document)
    parsed = parse_manifest(body, digest_of(body), "the registry")
    with pytest.raises(DistributionError, match=r"app-two\.tar\.zst is not in the manifest"):
        check_against_metadata(parsed, metadata, "the registry")


def test_other_artifacts_and_unsafe_titles_are_refused(tmp_path: Path) -> None:
    image = encode(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": DIGEST,
                "size": 2,
            },
            "layers": [],
        }
    )
    with pytest.raises(DistributionError, match="is not a venvlayers stack"):
        parse_manifest(image, digest_of(image), "docker.io/library/python")
    out = publish_fake(tmp_path / "out", default_layers("unsafe"))
    (manifest,) = build_artifact([out]).manifests
    document = json.loads(manifest.body)
    document["layers"][0]["annotations"]["org.opencontainers.image.title"] = "../../etc/passwd"
    body = encode(document)
    with pytest.raises(DistributionError, match="is not a safe path"):
        check_names(parse_manifest(body, digest_of(body), "x").files, "x")
