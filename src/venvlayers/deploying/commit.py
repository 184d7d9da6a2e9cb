"""The commit phase of a deploy or remove: moving staged layers in, old ones out.

What is to happen is first recorded as a transaction in `state.json`; carrying it
out is idempotent, so a run cut short at any point is finished by the next one
(`recover`), which also deletes whatever an interrupted deploy left behind.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import DeployError
from ..names import DeployName
from ..progress import Reporter
from . import state as st

__all__ = ["apply_transaction", "prune_manifests", "recover"]

_LOG = logging.getLogger(__name__)
_LEFTOVER_ATTEMPTS = 50


def apply_transaction(target: Path, state: st.DeployState, reporter: Reporter) -> st.DeployState:
    """Carry out `state.transaction` (again, if an earlier attempt was cut short)."""
    txn = state.transaction
    assert txn is not None
    staging = st.state_dir(target) / txn.staging
    token = st.new_token()
    installed: dict[DeployName, st.LayerRecord] = {}
    try:
        for name in txn.install:
            record = txn.records[name]
            if _move_into_place(target, staging, name, record, token):
                installed[name] = record
            else:
                reporter.note(f"warning: the staged {name} vanished; deploy it again")
        complete = len(installed) == len(txn.install)
        removed = _remove_layers(target, staging, txn.remove, token) if complete else ()
    except OSError as exc:
        raise DeployError(
            f"moving layers into {target} failed ({exc.strerror or exc}); the previous "
            "layers are still in place and the next deploy will finish the job"
        ) from None
    layers = {k: v for k, v in state.layers.items() if k not in removed}
    layers.update(installed)
    final = st.DeployState(
        platform=txn.platform,
        source=txn.source,
        roots=txn.roots if complete else state.roots,
        layers=layers,
        # the new trust only with the whole deploy: a half-done one keeps the old
        trust=txn.trust if complete else state.trust,
        signed_by=txn.signed_by if complete else state.signed_by,
    )
    final = st.write_state(target, final)
    st.remove_quietly(staging)
    prune_manifests(target, final)
    return final


def _move_into_place(
    target: Path, staging: Path, name: DeployName, record: st.LayerRecord, token: str
) -> bool:
    final = target / name
    if record.inode and st.inode(final) == record.inode:
        return True  # moved by an earlier attempt
    staged = staging / name
    if not record.inode or st.inode(staged) != record.inode:
        for aside in staging.glob(f".old-{name}-*"):
            st.restore_aside(final, aside)
        return False
    aside = staging / f".old-{name}-{token}"
    st.replace_dir(staged, final, aside)
    return True


def _remove_layers(
    target: Path, staging: Path, names: Sequence[DeployName], token: str
) -> tuple[DeployName, ...]:
    """Move unneeded layers out of sight at once; they are deleted with the staging dir."""
    staging.mkdir(parents=True, exist_ok=True)
    for name in names:
        final = target / name
        if os.path.lexists(final):
            os.rename(final, staging / f".removed-{name}-{token}")
    return tuple(names)


def prune_manifests(target: Path, state: st.DeployState) -> None:
    keep = {f"{record.archive_sha256}.json" for record in state.layers.values()}
    if state.transaction is not None:
        keep |= {f"{r.archive_sha256}.json" for r in state.transaction.records.values()}
    directory = st.state_dir(target) / st.MANIFESTS
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name not in keep:
                st.remove_quietly(path)


def recover(target: Path, state: st.DeployState, reporter: Reporter) -> st.DeployState:
    """Finish what a killed deploy or remove left, and delete its leftovers (under the lock)."""
    if state.transaction is not None:
        reporter.note(f"finishing an interrupted deploy in {target}")
        state = apply_transaction(target, state, reporter)
    directory = st.state_dir(target)
    for entry in sorted(directory.iterdir()) if directory.is_dir() else ():
        if entry.name.startswith((st.STAGING_PREFIX, st.DOWNLOADS_PREFIX)):
            _LOG.info("removing %s, left by an interrupted deploy", entry)
            _remove_leftover(entry)
        elif entry.name.startswith(f".{st.STATE_FILE}."):  # write_atomic's temporary file
            st.remove_quietly(entry)
    prune_manifests(target, state)
    return state


def _remove_leftover(path: Path) -> None:
    """Delete a killed deploy's directory, which may still be changing for a moment.

    A postinstall the deploy had started outlives it briefly and may still be writing
    bytecode into the staging directory; retry for a while rather than leave the rest.
    """
    for _ in range(_LEFTOVER_ATTEMPTS):
        st.remove_quietly(path)
        if not os.path.lexists(path):
            return
        time.sleep(0.1)
    _LOG.warning("could not remove %s; the next deploy will try again", path)
