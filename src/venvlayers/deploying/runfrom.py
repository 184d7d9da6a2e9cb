"""`venvlayers run APP --from SOURCE`: deploy what an app needs, then run it (like `pipx run`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from .. import distribution
from .._util.cache import data_root
from .._util.fs import human_size
from ..errors import TransferError
from ..progress import NULL_REPORTER, Reporter
from . import state as st
from .operations import deploy
from .run import run_app

__all__ = ["default_run_target", "deploy_for_run", "run_from"]


def run_from(
    source: str | Path,
    app: str,
    *,
    args: Sequence[str] = (),
    target: Path | None = None,
    trusted_keys: Path | None = None,
    insecure: bool = False,
    reporter: Reporter = NULL_REPORTER,
) -> int:
    """Deploy what `app` needs from `source` (only what is missing), then run it.

    Like `pipx run` for a layered stack: `deploy_for_run`, then `run_app` there.
    Returns the app's exit code.
    """
    where = deploy_for_run(
        source,
        app,
        target=target,
        trusted_keys=trusted_keys,
        insecure=insecure,
        reporter=reporter,
    )
    return run_app(app, location=where, args=args)


def deploy_for_run(
    source: str | Path,
    app: str,
    *,
    target: Path | None = None,
    trusted_keys: Path | None = None,
    insecure: bool = False,
    reporter: Reporter = NULL_REPORTER,
) -> Path:
    """Deploy what `app` needs from `source` (only what is missing); the deployment.

    The deployment goes to `target`, by default a per-user directory for the source
    (`default_run_target`), so a second run fetches nothing and a new release fetches
    only the layers that changed. When the source cannot be reached but the app was
    deployed before, that copy is used (with a note); a deploy that changed something
    is noted in one line. A caller that shows progress
    stops showing it before it starts the app, whose output is the user's.
    """
    target = target if target is not None else default_run_target(source)
    try:
        result = deploy(
            source,
            target,
            apps=[app],
            trusted_keys=trusted_keys,
            insecure=insecure,
            reporter=reporter,
        )
        if result.changed:  # else say nothing: the app's output is what the user wants
            fetched = f", {human_size(result.fetched)} fetched" if result.fetched else ""
            reporter.note(
                f"deployed {len(result.changed)} of {len(result.layers)} layers for {app} "
                f"into {target} ({result.seconds:.1f}s{fetched})"
            )
    except TransferError as exc:
        state = st.read_state(target) if target.is_dir() else None
        if state is None or not state.layers:
            raise type(exc)(
                f"{exc} (and {app} was never deployed from it here to run offline)"
            ) from None
        reporter.note(f"warning: {exc}; running what is deployed in {target}")
    return target


def default_run_target(source: str | Path) -> Path:
    """Where `run --from SOURCE` deploys: one directory per source, tag or digest aside.

    Releases of one repository share a directory, so their common layers are shared
    and an update fetches only what changed.
    """
    text = str(source)
    if isinstance(source, str) and distribution.is_reference(text):
        ref = distribution.parse_reference(text)
        if isinstance(ref, distribution.RegistryReference):
            base = f"oci://{ref.host}/{ref.repository}"
        else:
            base = f"oci-layout:{ref.path.absolute() if ref.path is not None else ref.url}"
    elif isinstance(source, str) and "://" in text:
        base = text.rstrip("/")
    else:
        base = str(Path(text).absolute())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base.split("://", 1)[-1]).strip("-.")[-60:]
    digest = hashlib.sha256(base.encode()).hexdigest()[:10]
    return data_root() / "run" / f"{slug}-{digest}"
