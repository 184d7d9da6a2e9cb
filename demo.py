"""The venvlayers demo: the whole pipeline on examples/sklearn, in one command.

    python3 demo.py

On a fresh machine with Python 3.11+ and access to PyPI it:

1. makes its own virtual environment (`.venv-demo/`) and installs venvlayers there;
2. imports a runtime from the CPython running this script (no download needed);
3. locks (only if the committed locks do not fit that runtime), builds, publishes and
   deploys the example stack into a fresh directory, and runs both apps;
4. prints a summary: layers, archive sizes, time per stage, disk saved.

Everything lands in `_demo/` (git-ignored). Running it again is fast: every stage
skips what is unchanged. `--fresh` starts from scratch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv-demo"
WORK = ROOT / "_demo"
EXAMPLE = ROOT / "examples" / "sklearn"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _source_stamp() -> str:
    h = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for path in sorted((ROOT / "src").rglob("*.py")):
        h.update(path.as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def bootstrap() -> None:
    """Create .venv-demo with venvlayers installed (again only if the source changed)."""
    stamp = VENV / ".venvlayers-demo-stamp"
    wanted = _source_stamp()
    if stamp.exists() and stamp.read_text() == wanted and _venv_python().exists():
        return
    print("setting up .venv-demo (one time) ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    subprocess.run(
        [
            _venv_python(),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT),
        ],
        check=True,
    )
    stamp.write_text(wanted)


def main() -> int:
    if "--fresh" in sys.argv:
        shutil.rmtree(WORK, ignore_errors=True)
    if Path(sys.prefix).resolve() != VENV.resolve():
        bootstrap()
        base = Path(sys.base_prefix)
        env = {**os.environ, "VENVLAYERS_DEMO_PREFIX": str(base)}
        return subprocess.call([_venv_python(), __file__, *sys.argv[1:]], env=env)
    return run_demo(Path(os.environ.get("VENVLAYERS_DEMO_PREFIX", sys.base_prefix)))


def run_demo(prefix: Path) -> int:
    # imported here: only the demo's own environment has venvlayers installed
    from rich.console import Console
    from rich.table import Table

    from venvlayers import VenvLayersError
    from venvlayers._util.fs import dir_size, human_size
    from venvlayers.building import BuildOptions, build_stack
    from venvlayers.deploying import deploy
    from venvlayers.deploying.run import run_app
    from venvlayers.locking import LockOptions, lock_stack
    from venvlayers.platforms import build_platform
    from venvlayers.publishing import PublishOptions, publish_stack
    from venvlayers.runtimes import import_runtime, list_runtimes
    from venvlayers.spec import StackSpec

    console = Console(highlight=False)
    os.environ.setdefault("VENVLAYERS_CACHE_DIR", str(WORK / "cache"))
    times: dict[str, float] = {}

    def stage(name: str) -> _Timer:
        return _Timer(name, times, console)

    try:
        version = _python_version(prefix)
        with stage("runtime import"):
            known = [c.runtime for c in list_runtimes() if c.runtime.source == "import"]
            if not any(r.version == version for r in known):
                import_runtime(prefix)
        project = _project(version)
        stack = StackSpec.load(project / "venvstacks.toml")
        with stage("lock"):
            lock_stack(stack, LockOptions(if_needed=True))
        with stage("build"):
            build_stack(stack, BuildOptions(build_dir=WORK / "build"))
        with stage("publish"):
            # the defaults a user gets: the largest modules' bytecode shipped, the rest
            # compiled by the deploy, so the apps start at full speed on their first run
            options = PublishOptions(build_dir=WORK / "build", output_dir=WORK / "artifacts")
            published = publish_stack(stack, options)
        target = WORK / "deployed"
        with stage("deploy"):
            deploy(WORK / "artifacts", target)
        runs = {}
        for app in ("classify", "explore"):
            console.rule(f"venvlayers run {app}")
            started = time.perf_counter()
            code = run_app(app, location=target)
            runs[app] = (code, time.perf_counter() - started)
            if code:
                console.print(f"[red]{app} exited with {code}[/red]")
                return code
    except VenvLayersError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1

    table = Table(title=f"venvlayers demo on {build_platform()}", show_edge=False)
    for column in ("layer", "archive", "deployed"):
        table.add_column(column, justify="right" if column != "layer" else "left")
    sizes = {}
    for out in published:
        deployed_bytes = dir_size(target / out.deploy_name)
        sizes[out.deploy_name] = deployed_bytes
        archive = out.metadata.get("archive_size", 0)
        table.add_row(out.deploy_name, human_size(int(archive)), human_size(deployed_bytes))
    console.print(table)
    needs = {out.deploy_name: _needs(out.metadata) for out in published}
    stacked = sum(sizes.values())
    separate = sum(
        sum(sizes.get(n, 0) for n in needs[app]) for app in needs if app.startswith("app-")
    )
    console.print(
        "stages: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in times.items())
    )
    console.print(
        "apps: " + ", ".join(f"{app} ran in {secs:.2f}s" for app, (_c, secs) in runs.items())
    )
    saved = 1 - stacked / separate if separate else 0.0
    console.print(
        f"disk: {human_size(stacked)} deployed; one environment per app: {human_size(separate)}"
        f" ({saved:.0%} saved)"
    )
    where = target.relative_to(ROOT)
    console.print(f"deployed into {where}; try:")
    console.print(f"  {VENV.name}/bin/venvlayers status --target {where}")
    console.print(f"  {VENV.name}/bin/venvlayers run classify --target {where}")
    return 0


def _python_version(prefix: Path) -> str:
    python = next(p for p in (prefix / "bin" / "python3", prefix / "python.exe") if p.exists())
    out = subprocess.run(
        [python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _project(version: str) -> Path:
    """A copy of the example whose runtime is the local CPython (locks kept if they fit)."""
    project = WORK / "project"
    outputs = shutil.ignore_patterns("_build", "_artifacts", "_export", "_deploy*", "requirements")
    shutil.copytree(EXAMPLE, project, dirs_exist_ok=True, ignore=outputs)
    if not (project / "requirements").exists():  # later runs keep their own (re)locks
        shutil.copytree(EXAMPLE / "requirements", project / "requirements")
    spec = project / "venvstacks.toml"
    text = (EXAMPLE / "venvstacks.toml").read_text()
    spec_text = text.replace(
        'python_implementation = "cpython@3.11.7"', f'python_implementation = "cpython@{version}"'
    )
    if not spec.exists() or spec.read_text() != spec_text:
        spec.write_text(spec_text)
    return project


def _needs(metadata: dict[str, object]) -> list[str]:
    """The deployed layers an app needs: itself, its frameworks and its runtime."""
    required = metadata.get("required_layers") or []
    assert isinstance(required, list)
    return [str(metadata["install_target"]), *map(str, required), str(metadata["runtime_layer"])]


class _Timer:
    def __init__(self, name: str, times: dict[str, float], console: object) -> None:
        self.name, self.times = name, times

    def __enter__(self) -> None:
        print(f"== {self.name}", flush=True)
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.times[self.name] = time.perf_counter() - self.started


if __name__ == "__main__":
    sys.exit(main())
