"""`venvlayers status`: what is deployed in a target, and whether it is intact."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._util.fs import dir_size
from ..archives.archive import ManifestEntry, verify_tree
from ..errors import DeployError
from ..names import DeployName, LayerCategory
from . import state as st
from .trust import SignedBy, TrustedKeys

__all__ = ["AppStatus", "LayerStatus", "TargetStatus", "status"]


@dataclass(frozen=True)
class LayerStatus:
    """A deployed layer: its record, whether its directory is there, what `verify` found."""

    record: st.LayerRecord
    present: bool
    problems: tuple[str, ...] = ()
    verified: bool = False
    disk_size: int | None = None

    @property
    def ok(self) -> bool:
        return self.present and not self.problems


@dataclass(frozen=True)
class AppStatus:
    name: str
    install_target: DeployName
    launch_module: str | None
    missing: tuple[DeployName, ...]
    damaged: tuple[DeployName, ...]

    @property
    def runnable(self) -> bool:
        return not self.missing and not self.damaged


@dataclass(frozen=True)
class TargetStatus:
    target: Path
    platform: str | None
    source: str | None
    updated_at: str
    roots: Mapping[str, DeployName]
    layers: tuple[LayerStatus, ...]
    apps: tuple[AppStatus, ...]
    unfinished: bool
    """An interrupted deploy is recorded; the next deploy or remove finishes it."""
    verified: bool
    trusted_keys: TrustedKeys | None = None
    """The keys every deploy into the target must be signed by (None: any stack)."""
    signed_by: SignedBy | None = None
    """Who signed what is deployed (None: its signature was not checked)."""

    @property
    def damaged(self) -> bool:
        return any(not layer.ok for layer in self.layers)


_PYCACHE = "__pycache__"


def status(target: Path, *, verify: bool = False) -> TargetStatus:
    """What is deployed in `target`; with `verify`, every installed file is re-hashed.

    Bytecode caches written after deployment (`__pycache__` entries the archive did
    not ship) are not damage.
    """
    target = Path(target).absolute()
    state = st.read_state(target)
    if state is None:
        raise DeployError(f"{target} has no venvlayers deployment (no {st.STATE_DIR}/state.json)")
    layers = tuple(
        _layer_status(target, state.layers[name], verify) for name in sorted(state.layers)
    )
    by_name = {layer.record.install_target: layer for layer in layers}
    apps = []
    for layer in layers:
        record = layer.record
        if record.category is not LayerCategory.APPLICATIONS:
            continue
        needs = (record.install_target, *record.lower)
        missing = tuple(n for n in needs if n not in by_name or not by_name[n].present)
        damaged = tuple(n for n in needs if n in by_name and by_name[n].problems)
        apps.append(
            AppStatus(
                record.short_name, record.install_target, record.launch_module, missing, damaged
            )
        )
    return TargetStatus(
        target=target,
        platform=state.platform,
        source=state.source,
        updated_at=state.updated_at,
        roots=state.roots,
        layers=layers,
        apps=tuple(apps),
        unfinished=state.transaction is not None,
        verified=verify,
        trusted_keys=state.trust,
        signed_by=state.signed_by,
    )


def _layer_status(target: Path, record: st.LayerRecord, verify: bool) -> LayerStatus:
    layer_dir = target / record.install_target
    present = layer_dir.is_dir()
    if not verify:
        problems = () if present else (f"{layer_dir} is missing",)
        return LayerStatus(record, present, problems)
    if not present:
        return LayerStatus(record, False, (f"{layer_dir} is missing",), True)
    manifest = st.read_manifest(target, record.archive_sha256)
    found = verify_tree(layer_dir, manifest, exclude=_later_bytecode(manifest))
    return LayerStatus(record, True, tuple(found), True, dir_size(layer_dir))


def _later_bytecode(manifest: Sequence[ManifestEntry]) -> Callable[[str], bool]:
    """An `exclude` for `verify_tree`: `__pycache__` content that the archive did not ship."""
    shipped = {entry.path for entry in manifest}
    parents: set[str] = set()
    for path in shipped:
        if _PYCACHE in path:
            parts = path.split("/")
            parents.update("/".join(parts[:i]) for i in range(1, len(parts)))

    def exclude(path: str) -> bool:
        if _PYCACHE not in path.split("/"):
            return False
        return path not in shipped and path not in parents

    return exclude
