"""Build benchmark (issue 5): a realistic stack against plain uv installs.

Run by hand (needs PyPI access; not part of the test suite):

    .venv/bin/python bench/build_bench.py [--work DIR] [--runs N]

Stack: runtime with numpy; frameworks scipy+pandas and scikit-learn (on top of it);
two apps. Reports, from a warm uv cache:

- wall time of `venvlayers build --clean` against one plain `uv venv` +
  `uv pip install` of the same packages (target: build within 1.5x);
- disk used by the built stack against one full venv per app (target: <= 60%);
- `bin/python -c pass` of an app against the runtime's own (target: within 3 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SPEC = """
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{version}"
requirements = ["numpy"]
platforms = ["{platform}"]

[[frameworks]]
name = "scipy-pandas"
runtime = "cpython-3.11"
requirements = ["scipy", "pandas"]

[[frameworks]]
name = "sklearn"
frameworks = ["scipy-pandas"]
requirements = ["scikit-learn"]

[[applications]]
name = "classify"
frameworks = ["sklearn"]
requirements = ["joblib"]
launch_module = "classify.py"

[[applications]]
name = "tables"
frameworks = ["scipy-pandas"]
requirements = ["tabulate"]
launch_module = "tables.py"
"""

APPS = {
    "classify.py": "import sklearn, numpy\nprint(sklearn.__version__, numpy.__version__)\n",
    "tables.py": "import pandas, tabulate\nprint(pandas.__version__)\n",
}
APP_PACKAGES = {
    "classify": ["numpy", "scipy", "pandas", "scikit-learn", "joblib"],
    "tables": ["numpy", "scipy", "pandas", "tabulate"],
}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PYTHON"))}
    env["UV_SYSTEM_CERTS"] = "1"
    return env


def run(cmd: list[str | Path], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, env=clean_env(), **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def disk_usage(*paths: Path) -> int:
    """Bytes on disk, each inode once (hard links from uv's cache count where they live)."""
    out = subprocess.run(
        ["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1].split()[0])


def startup_ms(python: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(python), "-c", "pass"], check=True, env={"PATH": os.defpath})
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.mean(times[: max(1, runs // 2)])  # the faster half: less noise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vl-bench")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    venvlayers = bin_dir / "venvlayers"
    uv = Path(
        subprocess.run(
            [sys.executable, "-c", "import uv; print(uv.find_uv_bin())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    from venvlayers.platforms import build_platform

    version = ".".join(map(str, sys.version_info[:3]))
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    project = work / "project"
    project.mkdir(parents=True)
    (project / "venvstacks.toml").write_text(
        textwrap.dedent(SPEC.format(version=version, platform=build_platform()))
    )
    for name, text in APPS.items():
        (project / name).write_text(text)
    os.environ.setdefault("VENVLAYERS_CACHE_DIR", str(work / "cache"))
    run([venvlayers, "-q", "runtime", "import", sys.base_prefix])
    lock_s = run([venvlayers, "-q", "lock", project / "venvstacks.toml"])
    # warm uv's cache (and the runtime), then time clean builds
    run([venvlayers, "-q", "build", project / "venvstacks.toml"])
    builds = [
        run([venvlayers, "-q", "build", project / "venvstacks.toml", "--clean"])
        for _ in range(args.runs)
    ]
    plain = []
    all_packages = sorted({p for pkgs in APP_PACKAGES.values() for p in pkgs})
    for i in range(args.runs):
        venv = work / f"plain-{i}"
        plain.append(
            run([uv, "venv", "-q", "--python", sys.executable, venv])
            + run([uv, "pip", "install", "-q", "--python", venv / "bin/python", *all_packages])
        )
    app_venvs = []
    for app, packages in APP_PACKAGES.items():
        venv = work / f"venv-{app}"
        run([uv, "venv", "-q", "--python", sys.executable, venv])
        run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--link-mode",
                "copy",
                "--python",
                venv / "bin/python",
                *packages,
            ]
        )
        app_venvs.append(venv)
    build_dir = project / "_build"
    # the build shares files with uv's cache through hard links; count what a deployed
    # stack holds by exporting it (plain copies), like the separate venvs (copy mode)
    run([venvlayers, "-q", "local-export", project / "venvstacks.toml", "-o", work / "export"])
    stack_bytes = disk_usage(
        *(p for p in (work / "export").iterdir() if p.is_dir() and not p.name.startswith("__"))
    )
    runtime_bytes = disk_usage(work / "export" / "cpython-3.11")
    venv_bytes = disk_usage(*app_venvs) + runtime_bytes * len(app_venvs)
    rt_ms = startup_ms(build_dir / "cpython-3.11" / f"bin/python{version.rsplit('.', 1)[0]}", 30)
    app_ms = startup_ms(build_dir / "app-classify" / "bin" / "python", 30)

    build_s, plain_s = statistics.median(builds), statistics.median(plain)
    print(f"lock (cold resolver cache): {lock_s:.1f} s")
    print(
        f"build --clean (warm uv cache): {build_s:.2f} s  (runs: {[round(b, 2) for b in builds]})"
    )
    print(f"plain uv venv + pip install:   {plain_s:.2f} s  (runs: {[round(p, 2) for p in plain]})")
    print(f"  ratio: {build_s / plain_s:.2f}x (target <= 1.5x)")
    print(
        f"disk: stack {stack_bytes / 2**20:.0f} MiB vs separate venvs {venv_bytes / 2**20:.0f} MiB"
        f" (each with its own runtime): {stack_bytes / venv_bytes:.0%} (target <= 60%)"
    )
    print(
        f"startup: runtime {rt_ms:.1f} ms, app {app_ms:.1f} ms, overhead "
        f"{app_ms - rt_ms:+.1f} ms (target <= 3 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
