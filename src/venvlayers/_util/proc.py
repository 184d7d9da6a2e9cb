"""The one place venvlayers starts subprocesses (uv, patchelf, layer pythons).

Every command is logged, its output captured, and a failure raised as our own error
type quoting the tool's own message, so the user sees why uv refused, not a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ToolError, VenvLayersError

_LOG = logging.getLogger(__name__)

# Variables the tools we start may legitimately need from the caller; everything else
# (PYTHONPATH, PIP_*, VIRTUAL_ENV, UV_INDEX_URL, ...) would make results depend on who runs us.
_PASSTHROUGH = frozenset(
    {
        "HOME",
        "USER",
        "LOGNAME",
        "TMPDIR",
        "TEMP",
        "TMP",
        "SYSTEMROOT",
        "SystemRoot",
        "COMSPEC",
        "PATHEXT",
        "LOCALAPPDATA",
        "APPDATA",
        "USERPROFILE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        # uv's own cache location and network settings (not resolution settings)
        "UV_CACHE_DIR",
        "UV_HTTP_TIMEOUT",
        "UV_NATIVE_TLS",
        "UV_CONCURRENT_DOWNLOADS",
        "UV_CONCURRENT_INSTALLS",
        "UV_LINK_MODE",
        "UV_OFFLINE",
        "SOURCE_DATE_EPOCH",
    }
)


def _is_credential(name: str) -> bool:
    # uv reads index credentials from UV_INDEX_<NAME>_USERNAME / _PASSWORD only
    return name.startswith("UV_INDEX_") and name.endswith(("_USERNAME", "_PASSWORD"))


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a subprocess that does not depend on the caller's shell.

    Keeps only what is needed to reach the network and a cache (proxies, CA bundle,
    HOME, uv credentials) and sets a UTF-8 locale; `extra` is applied last.
    """
    env = {k: v for k, v in os.environ.items() if k in _PASSTHROUGH or _is_credential(k)}
    env["PATH"] = os.defpath if os.name != "nt" else os.environ.get("PATH", "")
    env["LC_ALL"] = "C.UTF-8" if os.name != "nt" else env.get("LC_ALL", "")
    env["PYTHONUTF8"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    env["NO_COLOR"] = "1"
    if extra:
        env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def format_command(cmd: Sequence[str | os.PathLike[str]]) -> str:
    return shlex.join(os.fspath(c) for c in cmd)


def _tail_message(text: str) -> str:
    """The most telling line of a tool's error output."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "no error output"
    for line in lines:
        # uv prints its primary message first, after "error:"
        low = line.lower()
        if low.startswith(("error:", "× ", "x ")):
            rest = lines[lines.index(line) :]
            text = " ".join(rest[:6])
            # our own message already says it failed: drop the tool's "error:" prefix
            for prefix in ("error:", "× "):
                if text.lower().startswith(prefix):
                    text = text[len(prefix) :].lstrip()
            return text
    return " ".join(lines[-3:])


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    error: type[VenvLayersError] = ToolError,
    input_text: str | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with captured text output; on failure raise `error` naming `what`.

    `env` defaults to `clean_env()`: callers never inherit the user's environment by
    accident.
    """
    args = [os.fspath(c) for c in cmd]
    _LOG.debug("running: %s", format_command(args))
    try:
        proc = subprocess.run(
            args,
            env=dict(env) if env is not None else clean_env(),
            cwd=cwd,
            input=input_text,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise error(f"{what}: cannot run {args[0]!r} ({exc.strerror})") from None
    except subprocess.TimeoutExpired:
        raise error(f"{what}: {Path(args[0]).name} did not finish within {timeout}s") from None
    if proc.stdout:
        _LOG.debug("stdout of %s:\n%s", Path(args[0]).name, proc.stdout.rstrip())
    if proc.stderr:
        _LOG.debug("stderr of %s:\n%s", Path(args[0]).name, proc.stderr.rstrip())
    if check and proc.returncode != 0:
        message = _tail_message(proc.stderr or proc.stdout)
        raise error(f"{what}: {message}")
    return proc


def stop_worker(proc: subprocess.Popen[str], *, timeout: float = 10) -> None:
    """End a worker process that reads requests from its stdin.

    Closing stdin is its signal to finish; one that does not within `timeout` is killed,
    so that an error or Ctrl-C in the parent never leaves a worker behind.
    """
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.close()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
