"""What a deploy remembers in its target, and how it changes the target safely.

    TARGET/<install_target>/                one directory per deployed layer
    TARGET/.venvlayers/lock                 flock()ed while a deploy or remove runs
    TARGET/.venvlayers/state.json           layers, roots, an unfinished transaction
    TARGET/.venvlayers/manifests/<sha>.json installed files of the layer from that archive
    TARGET/.venvlayers/staging-<token>/     layers being prepared (deleted when done)
    TARGET/.venvlayers/downloads/           remote archives of an unfinished deploy (resumed)

`state.json` is only ever replaced whole (write, fsync, rename), so a reader sees one
version or the next. A deploy prepares every new layer in a staging directory first
and records a *transaction* (which staged directory becomes which layer, which layers
go) before it moves anything: whatever kills it afterwards, the next deploy or remove
finishes the transaction before doing its own work.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from .._util.fs import exchange, format_json, remove_tree, replace_dir, restore_aside, write_atomic
from ..archives.common import ManifestEntry
from ..errors import ArchiveError, DeployError
from ..layout import LAYER_CONFIG
from ..names import BuildName, DeployName, LayerCategory
from .trust import SignedBy, TrustedKeys

__all__ = [
    "DOWNLOADS",
    "DOWNLOADS_PREFIX",
    "FORMAT",
    "LOCK_FILE",
    "MANIFESTS",
    "STAGING_PREFIX",
    "STATE_DIR",
    "STATE_FILE",
    "DeployState",
    "LayerRecord",
    "Transaction",
    "exchange",
    "inode",
    "manifest_path",
    "new_token",
    "now",
    "read_layer_config",
    "read_manifest",
    "read_state",
    "remove_quietly",
    "replace_dir",
    "restore_aside",
    "state_dir",
    "target_lock",
    "write_manifest",
    "write_state",
]

STATE_DIR = ".venvlayers"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
MANIFESTS = "manifests"
STAGING_PREFIX = "staging-"
DOWNLOADS_PREFIX = "downloads-"  # older versions: one directory per deploy
DOWNLOADS = "downloads"  # remote archives of unfinished deploys, by sha256
FORMAT = 1


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def new_token() -> str:
    """Unique among concurrent processes and across reboots."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


# -- records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRecord:
    """One deployed layer as `state.json` remembers it."""

    install_target: DeployName
    layer_name: BuildName
    category: LayerCategory
    runtime_layer: DeployName
    required_layers: tuple[DeployName, ...]
    archive_name: str
    archive_sha256: str
    archive_size: int
    lock_version: int
    launch_module: str | None
    installed_size: int
    file_count: int
    deployed_at: str
    inode: int = 0
    """Of the layer directory; tells whether an interrupted transaction moved it yet."""
    bytecode: bool = False
    """Deployed with its bytecode compiled (False: `--no-compile`, or an older deploy)."""

    @property
    def lower(self) -> tuple[DeployName, ...]:
        if self.category is LayerCategory.RUNTIMES:
            return ()
        return (*self.required_layers, self.runtime_layer)

    @property
    def short_name(self) -> str:
        return self.layer_name.removeprefix(self.category.prefix)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "layer_name": self.layer_name,
            "category": self.category.value,
            "runtime_layer": self.runtime_layer,
            "required_layers": list(self.required_layers),
            "archive_name": self.archive_name,
            "archive_sha256": self.archive_sha256,
            "archive_size": self.archive_size,
            "lock_version": self.lock_version,
            "installed_size": self.installed_size,
            "file_count": self.file_count,
            "deployed_at": self.deployed_at,
            "inode": self.inode,
            "bytecode": self.bytecode,
        }
        if self.launch_module is not None:
            data["app_launch_module"] = self.launch_module
        return data

    @classmethod
    def from_dict(cls, install_target: str, data: Mapping[str, Any]) -> LayerRecord:
        try:
            launch = data.get("app_launch_module")
            return cls(
                install_target=DeployName(install_target),
                layer_name=BuildName(str(data["layer_name"])),
                category=LayerCategory(data["category"]),
                runtime_layer=DeployName(str(data["runtime_layer"])),
                required_layers=tuple(DeployName(str(x)) for x in data["required_layers"]),
                archive_name=str(data["archive_name"]),
                archive_sha256=str(data["archive_sha256"]),
                archive_size=int(data["archive_size"]),
                lock_version=int(data.get("lock_version", 1)),
                launch_module=str(launch) if launch is not None else None,
                installed_size=int(data.get("installed_size", 0)),
                file_count=int(data.get("file_count", 0)),
                deployed_at=str(data.get("deployed_at", "")),
                inode=int(data.get("inode", 0)),
                bytecode=bool(data.get("bytecode", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"layer {install_target!r}: {exc!r}") from None


@dataclass(frozen=True)
class Transaction:
    """Moves decided by a deploy or remove, replayed until they are all done.

    `install` maps layer directories to the staged directories (below
    `.venvlayers/<staging>/`) that replace them, in install order; `records` are
    the layers' new records; `remove` the layers to delete; `roots` the new roots.
    """

    staging: str
    install: tuple[DeployName, ...]
    records: Mapping[DeployName, LayerRecord]
    remove: tuple[DeployName, ...]
    roots: Mapping[str, DeployName]
    platform: str
    source: str | None
    trust: TrustedKeys | None = None
    """The keys the target trusts once the transaction is done."""
    signed_by: SignedBy | None = None
    """Who signed the stack being deployed (None: not checked)."""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "staging": self.staging,
            "install": list(self.install),
            "records": {k: v.to_dict() for k, v in self.records.items()},
            "remove": list(self.remove),
            "roots": dict(self.roots),
            "platform": self.platform,
            "source": self.source,
        }
        return {**data, **_trust_fields(self.trust, self.signed_by)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transaction:
        try:
            return cls(
                staging=str(data["staging"]),
                install=tuple(DeployName(str(x)) for x in data["install"]),
                records={
                    DeployName(k): LayerRecord.from_dict(k, v) for k, v in data["records"].items()
                },
                remove=tuple(DeployName(str(x)) for x in data["remove"]),
                roots={str(k): DeployName(str(v)) for k, v in data["roots"].items()},
                platform=str(data["platform"]),
                source=data.get("source"),
                **_read_trust_fields(data),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"transaction: {exc!r}") from None


@dataclass(frozen=True)
class DeployState:
    """`TARGET/.venvlayers/state.json`.

    `roots` maps the build name of each layer a user asked for (`app-two`) to the
    install target now deployed for it (`app-two@2`); every other layer stays only
    while a root needs it.
    """

    platform: str | None = None
    source: str | None = None
    updated_at: str = ""
    roots: Mapping[str, DeployName] = field(default_factory=dict)
    layers: Mapping[DeployName, LayerRecord] = field(default_factory=dict)
    transaction: Transaction | None = None
    trust: TrustedKeys | None = None
    """The allowed_signers a deploy into this target must satisfy (see `trust`)."""
    signed_by: SignedBy | None = None
    """Who signed the stack last deployed here, when it was checked."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": FORMAT,
            "platform": self.platform,
            "source": self.source,
            "updated_at": self.updated_at,
            "roots": dict(sorted(self.roots.items())),
            "layers": {k: self.layers[k].to_dict() for k in sorted(self.layers)},
            **_trust_fields(self.trust, self.signed_by),
        }
        if self.transaction is not None:
            data["transaction"] = self.transaction.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeployState:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown state format {data.get('format')!r}")
        txn = data.get("transaction")
        return cls(
            platform=data.get("platform"),
            source=data.get("source"),
            updated_at=str(data.get("updated_at", "")),
            roots={str(k): DeployName(str(v)) for k, v in data.get("roots", {}).items()},
            layers={
                DeployName(k): LayerRecord.from_dict(k, v)
                for k, v in data.get("layers", {}).items()
            },
            transaction=Transaction.from_dict(txn) if txn is not None else None,
            **_read_trust_fields(data),
        )

    def needed(self, roots: Mapping[str, DeployName] | None = None) -> set[DeployName]:
        """Install targets of the roots and of every layer below them."""
        keep: set[DeployName] = set()
        pending = list((self.roots if roots is None else roots).values())
        while pending:
            name = pending.pop()
            if name in keep:
                continue
            keep.add(name)
            record = self.layers.get(name)
            if record is not None:
                pending.extend(record.lower)
        return keep


class _TrustFields(TypedDict):
    trust: TrustedKeys | None
    signed_by: SignedBy | None


def _trust_fields(trust: TrustedKeys | None, signed_by: SignedBy | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if trust is not None:
        data["trusted_keys"] = trust.to_dict()
    if signed_by is not None:
        data["signed_by"] = signed_by.to_dict()
    return data


def _read_trust_fields(data: Mapping[str, Any]) -> _TrustFields:
    trust, signed = data.get("trusted_keys"), data.get("signed_by")
    return _TrustFields(
        trust=TrustedKeys.from_dict(trust) if trust is not None else None,
        signed_by=SignedBy.from_dict(signed) if signed is not None else None,
    )


def state_dir(target: Path) -> Path:
    return target / STATE_DIR


def read_state(target: Path) -> DeployState | None:
    """The target's state, None if nothing was ever deployed there."""
    path = state_dir(target) / STATE_FILE
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return DeployState.from_dict(json.loads(raw))
    except KeyError as exc:
        raise DeployError(
            f"{path} is damaged (field {exc.args[0]!r} is missing); move it away to start afresh"
        ) from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise DeployError(f"{path} is damaged ({exc}); move it away to start afresh") from None


def write_state(target: Path, state: DeployState) -> DeployState:
    state = replace(state, updated_at=now())
    try:
        write_atomic(state_dir(target) / STATE_FILE, format_json(state.to_dict()))
    except OSError as exc:
        raise _os_error(f"cannot write the deploy state in {state_dir(target)}", exc) from None
    return state


def manifest_path(target: Path, sha256: str) -> Path:
    return state_dir(target) / MANIFESTS / f"{sha256}.json"


def write_manifest(target: Path, sha256: str, entries: Sequence[ManifestEntry]) -> None:
    # compact: a big layer has tens of thousands of entries
    text = json.dumps([e.to_dict() for e in entries], separators=(",", ":"))
    try:
        write_atomic(manifest_path(target, sha256), text + "\n")
    except OSError as exc:
        raise _os_error("cannot record the installed files", exc) from None


def read_manifest(target: Path, sha256: str) -> tuple[ManifestEntry, ...]:
    path = manifest_path(target, sha256)
    try:
        data = json.loads(path.read_text("utf-8"))
        return tuple(ManifestEntry.from_dict(item) for item in data)
    except (OSError, ValueError, TypeError, ArchiveError) as exc:
        raise DeployError(f"cannot read the installed-file manifest {path}: {exc}") from None


def _os_error(what: str, exc: OSError) -> DeployError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DeployError(f"{what}: disk full")
    return DeployError(f"{what}: {exc.strerror or exc}")


# -- locking ----------------------------------------------------------------------------


@contextlib.contextmanager
def target_lock(
    target: Path, *, timeout: float | None, waiting: Callable[[str], None]
) -> Iterator[None]:
    """Hold the target's lock: one deploy or remove at a time (the OS frees it on death).

    `timeout=None` waits as long as it takes, `0` fails at once; `waiting` hears once
    that another process holds it.
    """
    directory = state_dir(target)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _os_error(f"cannot lock {target}", exc) from None
    try:
        _acquire(fd, target, timeout, waiting)
        with contextlib.suppress(OSError):  # who holds it, for the next one's message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _acquire(fd: int, target: Path, timeout: float | None, waiting: Callable[[str], None]) -> None:
    if sys.platform == "win32":
        return  # not supported there yet: deploys must not overlap
    import fcntl

    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                return  # a file system without locks: go on unprotected, as tar would
            raise
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        if deadline is not None and time.monotonic() >= deadline:
            raise DeployError(
                f"another venvlayers process (pid {holder}) is deploying into {target}; "
                "try again when it has finished"
            )
        if not told:
            waiting(
                f"waiting for another venvlayers process (pid {holder}) to finish with {target}"
            )
            told = True
        time.sleep(0.1)


def inode(path: Path) -> int:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return 0


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        remove_tree(path)


def read_layer_config(layer_dir: Path, name: str) -> dict[str, Any]:
    """A deployed or staged layer's `venvstacks_layer.json`; `name` names it in errors."""
    path = layer_dir / LAYER_CONFIG
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"{name}: cannot read its layer config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DeployError(f"{name}: its layer config {path} is not a JSON object")
    return data
