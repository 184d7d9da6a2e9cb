"""Benchmark `venvlayers deploy` against plain `tar -x` of the same archives; first app starts.

Run by hand (not part of the tests), on one or more directories written by
`venvlayers publish`:

    .venv/bin/python bench/deploy_bench.py PUBLISHED_DIR [...] [--runs 5] [--work DIR] [--json]

For each published stack, alternating so that machine load hits both alike, it times:

- `tar -x`: each archive unpacked by GNU tar (`tar --zstd -xf`, `-xJf`, `-xzf`) into an
  empty directory, one after the other, as a minimal shell deployer would (no
  verification, no postinstall: the apps cannot run afterwards);
- `deploy`: `venvlayers.deploying.deploy()` into an empty directory, in-process;
- `deploy (CLI)`: `venvlayers -q deploy` in a fresh process (adds interpreter start and
  imports).

Then, in a fresh deployment, each app's first start (`<layer>/bin/python -m <module>`,
which compiles and caches bytecode unless the archives shipped it) and second start,
and the first start through `venvlayers run`. Wall times are the median of the runs
(min in brackets); CPU is user+system of this process and its children.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from venvlayers import deploying

_TAR_FLAGS = {".tar.zst": ["--zstd", "-xf"], ".tar.xz": ["-xJf"], ".tar.gz": ["-xzf"]}


def layers(source: Path) -> list[dict[str, Any]]:
    meta = json.loads((source / "__venvstacks__" / "venvstacks.json").read_text())
    return [
        x
        for category in ("runtimes", "frameworks", "applications")
        for x in meta["layers"][category]
    ]


def tar_x(source: Path, dest: Path) -> None:
    dest.mkdir()
    for layer in layers(source):
        name = layer["archive_name"]
        suffix = next(s for s in _TAR_FLAGS if name.endswith(s))
        subprocess.run(["tar", *_TAR_FLAGS[suffix], source / name, "-C", dest], check=True)


def deploy_api(source: Path, dest: Path) -> None:
    deploying.deploy(source, dest)


def deploy_cli(source: Path, dest: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "venvlayers", "-q", "deploy", source, "--target", dest], check=True
    )


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(action: Callable[[], object]) -> tuple[float, float]:
    cpu0, wall0 = cpu(), time.perf_counter()
    action()
    return time.perf_counter() - wall0, cpu() - cpu0


def clean_env() -> dict[str, str]:
    return {"PATH": os.defpath, "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"}


def app_starts(source: Path, target: Path) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    apps = [x for x in layers(source) if x.get("app_launch_module")]
    for app in apps:
        python = target / app["install_target"] / "bin" / "python"
        command = [str(python), "-m", app["app_launch_module"]]

        def start(cmd: list[str] = command) -> None:
            subprocess.run(cmd, check=True, env=clean_env(), stdout=subprocess.DEVNULL)

        first, _ = timed(start)
        second, _ = timed(start)
        results[app["install_target"]] = {"first": first, "second": second}
    # through `venvlayers run`, in a deployment no app has started in yet
    fresh = target.with_name(target.name + "-cli")
    deploying.deploy(source, fresh)
    for app in apps:
        name = app["layer_name"].removeprefix("app-")

        def via_cli(name: str = name) -> None:
            subprocess.run(
                [sys.executable, "-m", "venvlayers", "run", name, "--target", fresh],
                check=True,
                env=clean_env(),
                stdout=subprocess.DEVNULL,
            )

        results[app["install_target"]]["venvlayers run (first)"] = timed(via_cli)[0]
    shutil.rmtree(fresh)
    return results


def bench(source: Path, work: Path, runs: int) -> dict[str, Any]:
    methods = {"tar -x": tar_x, "deploy": deploy_api, "deploy (CLI)": deploy_cli}
    walls: dict[str, list[float]] = {m: [] for m in methods}
    cpus: dict[str, list[float]] = {m: [] for m in methods}
    for run in range(runs):
        for method, action in methods.items():
            dest = work / f"{method.replace(' ', '_').strip('()')}-{run}"
            wall, used = timed(lambda a=action, d=dest: a(source, d))  # type: ignore[misc]
            walls[method].append(wall)
            cpus[method].append(used)
            if not (method == "deploy" and run == runs - 1):
                shutil.rmtree(dest)
    target = work / f"deploy-{runs - 1}"
    starts = app_starts(source, target)
    shutil.rmtree(target)
    summary = {
        m: {
            "median": statistics.median(walls[m]),
            "min": min(walls[m]),
            "cpu": statistics.median(cpus[m]),
        }
        for m in methods
    }
    ratio = summary["deploy"]["median"] / summary["tar -x"]["median"]
    size = sum(x["archive_size"] for x in layers(source))
    return {
        "source": str(source),
        "archive_bytes": size,
        "wall": summary,
        "ratio": ratio,
        "apps": starts,
    }


def render(result: dict[str, Any]) -> None:
    print(f"\n{result['source']} ({result['archive_bytes'] / 2**20:.1f} MiB of archives)")
    for method, numbers in result["wall"].items():
        print(
            f"  {method:<14} {numbers['median']:7.3f}s  (min {numbers['min']:.3f}s)"
            f"  cpu {numbers['cpu']:.3f}s"
        )
    print(f"  deploy / tar -x: {result['ratio']:.2f}x")
    for app, numbers in result["apps"].items():
        cells = ", ".join(f"{k} {v:.3f}s" for k, v in numbers.items())
        print(f"  {app}: {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    results = []
    for source in args.sources:
        scratch = work / source.name
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True)
        results.append(bench(source.absolute(), scratch, args.runs))
        if not args.json:
            render(results[-1])
    if args.json:
        print(json.dumps(results, indent=2))
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
