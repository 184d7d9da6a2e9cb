"""Running uv: the binary from the `uv` wheel, with an environment we control.

uv reads a lot of ambient configuration (uv.toml files, `UV_*` variables, pip's
settings are ignored but uv's own are not). Every call goes through `run_uv`, which
passes `--no-config` semantics via the environment and only the settings we choose.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ToolError, VenvLayersError
from .proc import clean_env, run


@functools.cache
def uv_binary() -> Path:
    """The uv executable shipped by the `uv` PyPI package we depend on."""
    try:
        from uv import find_uv_bin
    except ImportError:  # pragma: no cover - uv is a hard dependency
        raise ToolError("the 'uv' package is not installed; reinstall venvlayers") from None
    return Path(find_uv_bin())


def uv_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for uv: no user/system uv.toml, system CA certificates."""
    env = clean_env()
    env["UV_NO_CONFIG"] = "1"
    # Corporate proxies re-sign TLS with a CA installed in the system store; uv's
    # bundled roots would reject it. Newer uv reads UV_SYSTEM_CERTS, older UV_NATIVE_TLS.
    if os.environ.get("UV_SYSTEM_CERTS", "1") not in ("0", "false"):
        env.setdefault("UV_SYSTEM_CERTS", "1")
        env.setdefault("UV_NATIVE_TLS", "1")
    env["UV_NO_PROGRESS"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if extra:
        env.update(extra)
    return env


def run_uv(
    args: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    error: type[VenvLayersError] = ToolError,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `uv ARGS` and raise `error` quoting uv's own message on failure."""
    return run(
        [uv_binary(), *args],
        what=what,
        error=error,
        cwd=cwd,
        env=uv_env(env),
        check=check,
    )
