"""Benchmark deployed start-up (issue 15): deploy + first start, steady start, sizes.

Run by hand (not part of the tests), on directories written by `venvlayers publish`:

    .venv/bin/python bench/bytecode_bench.py PUBLISHED_DIR [...] [--rounds 3]
        [--starts 5] [--xz PUBLISHED_XZ_DIR ...] [--modes] [--work DIR] [--json FILE]

For each published stack, in one run, alternating the methods round by round so that
machine load hits them alike (this machine is shared: expect noise, read the minima):

- `tar -x`: every archive through `zstd -dc | tar -x` into an empty directory;
- `deploy --no-compile`: `venvlayers -q deploy --no-compile` in a fresh process;
- `reference`: what venvstacks' deploy amounts to: `tar -x` of every archive, each
  layer's postinstall (links only), then ONE `python -m compileall -q` of every
  layer's `lib/` with the runtime's interpreter (venvstacks' postinstall runs
  `compileall.compile_dir(lib)`: one process, timestamp pycs), then each app's first
  start;
- `deploy`: `venvlayers -q deploy` (compiles), then each app's first start.

Then each app's steady start (`PYTHONDONTWRITEBYTECODE=1`, `--starts` runs,
interleaved) in the reference tree (fully precompiled), the deployed tree and the
`--no-compile` tree; with `--modes`, also in copies of the reference tree recompiled
with checked-hash and unchecked-hash pycs. Sizes: the archives against the same layers
as `tar.xz -6` (`--xz DIR`: a `publish --format tar.xz` of the same build; otherwise
each tar stream is piped through `xz -6 -T0`, which takes minutes for big layers).

Targets (issue 15): steady start <= 1.1x the precompiled tree; deploy + first start
<= 0.5x the reference; archives <= 1.35x tar.xz -6; `deploy --no-compile` <= 1.5x
`tar -x`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENVLAYERS = [sys.executable, "-m", "venvlayers"]


def layers(source: Path) -> list[dict[str, Any]]:
    meta = json.loads((source / "__venvstacks__" / "venvstacks.json").read_text())
    order = ("runtimes", "frameworks", "applications")
    return [x for category in order for x in meta["layers"].get(category, [])]


def apps(source: Path) -> list[dict[str, Any]]:
    return [x for x in layers(source) if x.get("app_launch_module")]


def clean_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.defpath, "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"}
    return {**env, **extra}


def sh(cmd: list[str] | str, **kwargs: Any) -> None:
    subprocess.run(cmd, check=True, shell=isinstance(cmd, str), **kwargs)


CPU: dict[str, list[float]] = {}


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(action: Any) -> float:
    """Wall seconds of `action`; its CPU seconds (ours and children's) go to `CPU`."""
    sh("sync")  # the previous step's dirty pages are not this step's cost
    cpu, started = cpu_now(), time.perf_counter()
    action()
    CPU.setdefault("last", []).append(cpu_now() - cpu)
    return time.perf_counter() - started


def tar_x(source: Path, dest: Path) -> None:
    dest.mkdir()
    for layer in layers(source):
        archive = source / layer["archive_name"]
        sh(f"zstd -dcq '{archive}' | tar -x -C '{dest}'")


def runtime_python(target: Path, source: Path) -> Path:
    runtime = next(x for x in layers(source) if x["install_target"] == x["runtime_layer"])
    config = target / runtime["install_target"] / "share/venv/metadata/venvstacks_layer.json"
    return target / runtime["install_target"] / json.loads(config.read_text())["python"]


def reference_install(source: Path, dest: Path) -> dict[str, float]:
    """tar -x, postinstall (links), one sequential compileall: venvstacks' procedure."""
    times = {"tar": timed(lambda: tar_x(source, dest))}
    python = runtime_python(dest, source)

    def postinstalls() -> None:
        for layer in layers(source):
            script = dest / layer["install_target"] / "postinstall.py"
            sh([str(python), "-I", str(script), "--no-compile"], env=clean_env())

    times["postinstall"] = timed(postinstalls)
    libs = [str(dest / x["install_target"] / "lib") for x in layers(source)]
    times["compileall"] = timed(
        lambda: subprocess.run(  # exit 1 when some file does not compile: not fatal
            [str(python), "-I", "-m", "compileall", "-q", *libs],
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            check=False,
        )
    )
    return times


def start(target: Path, app: dict[str, Any], **env: str) -> float:
    python = target / app["install_target"] / "bin" / "python"
    command = [str(python), "-P", "-m", app["app_launch_module"]]
    return timed(lambda: sh(command, env=clean_env(**env), stdout=subprocess.DEVNULL, cwd=target))


def deploy(source: Path, dest: Path, *extra: str) -> None:
    sh([*VENVLAYERS, "-q", "deploy", str(source), "--target", str(dest), *extra])


def xz_size(source: Path, xz_dirs: list[Path]) -> int | None:
    for xz_dir in xz_dirs:
        if (xz_dir / "__venvstacks__").is_dir():
            names = {x["install_target"]: x["archive_name"] for x in layers(xz_dir)}
            if set(names) == {x["install_target"] for x in layers(source)}:
                return sum((xz_dir / name).stat().st_size for name in names.values())
    total = 0
    for layer in layers(source):
        out = subprocess.run(
            f"zstd -dcq '{source / layer['archive_name']}' | xz -6 -T0 | wc -c",
            shell=True,
            check=True,
            capture_output=True,
            text=True,
        )
        total += int(out.stdout)
    return total


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values)}


def bench_stack(
    source: Path, work: Path, rounds: int, starts: int, xz_dirs: list[Path], modes: bool
) -> dict[str, Any]:
    wall: dict[str, list[float]] = {}
    app_list = apps(source)

    cpu: dict[str, list[float]] = {}

    def note(key: str, seconds: float, spent: float | None = None) -> None:
        wall.setdefault(key, []).append(seconds)
        cpu.setdefault(key, []).append(CPU["last"][-1] if spent is None else spent)

    keep: dict[str, Path] = {}
    for r in range(rounds):
        last = r == rounds - 1
        steps = ["tar", "no-compile", "reference", "deploy"]
        if r % 2:
            steps.reverse()
        for step in steps:
            dest = work / f"{step}-{r}"
            if step == "tar":
                note("tar -x", timed(lambda d=dest: tar_x(source, d)))
            elif step == "no-compile":
                note("deploy --no-compile", timed(lambda d=dest: deploy(source, d, "--no-compile")))
            elif step == "reference":
                mark = len(CPU["last"]) if "last" in CPU else 0
                times = reference_install(source, dest)
                for (key, value), spent in zip(times.items(), CPU["last"][mark:], strict=True):
                    note(f"reference: {key}", value, spent)
                total, total_cpu = sum(times.values()), sum(CPU["last"][mark:])
                for app in app_list:
                    first = start(dest, app)
                    note(f"reference: first start {app['layer_name']}", first)
                    total, total_cpu = total + first, total_cpu + CPU["last"][-1]
                note("reference: total", total, total_cpu)
            else:
                total = timed(lambda d=dest: deploy(source, d))
                note("deploy", total)
                total_cpu = CPU["last"][-1]
                for app in app_list:
                    first = start(dest, app)
                    note(f"deploy: first start {app['layer_name']}", first)
                    total, total_cpu = total + first, total_cpu + CPU["last"][-1]
                note("deploy: total", total, total_cpu)
            if last and step != "tar":
                keep[step] = dest
            else:
                shutil.rmtree(dest)
    trees = {
        "precompiled (reference)": keep["reference"],
        "deploy": keep["deploy"],
        "deploy --no-compile": keep["no-compile"],
    }
    if modes:
        python = runtime_python(keep["reference"], source)
        for mode in ("checked-hash", "unchecked-hash"):
            copy = work / f"reference-{mode}"
            shutil.copytree(keep["reference"], copy, symlinks=True)
            libs = [str(copy / x["install_target"] / "lib") for x in layers(source)]
            own = str(copy / python.relative_to(keep["reference"]))
            flags = ["-q", "-f", "-j0", "--invalidation-mode", mode]
            subprocess.run(
                [own, "-I", "-m", "compileall", *flags, *libs],
                env=clean_env(),
                stdout=subprocess.DEVNULL,
                check=False,
            )
            trees[f"precompiled, {mode}"] = copy
    steady: dict[str, dict[str, list[float]]] = {}
    for _ in range(starts):
        for label, tree in trees.items():
            for app in app_list:
                seconds = start(tree, app, PYTHONDONTWRITEBYTECODE="1")
                steady.setdefault(app["layer_name"], {}).setdefault(label, []).append(seconds)
    archive_bytes = sum(x["archive_size"] for x in layers(source))
    result = {
        "source": str(source),
        "archive_bytes": archive_bytes,
        "xz6_bytes": xz_size(source, xz_dirs),
        "wall": {k: stats(v) for k, v in wall.items()},
        "cpu": {k: stats(v) for k, v in cpu.items()},
        "steady": {app: {label: stats(v) for label, v in by.items()} for app, by in steady.items()},
    }
    for tree in trees.values():
        shutil.rmtree(tree)
    return result


def render(result: dict[str, Any]) -> None:
    wall = result["wall"]
    print(f"\n## {result['source']}\n")
    print("| step | wall, median | wall, min | CPU, median |\n|---|---:|---:|---:|")
    for key, value in wall.items():
        spent = result["cpu"][key]["median"]
        print(f"| {key} | {value['median']:.2f} s | {value['min']:.2f} s | {spent:.2f} s |")
    ratio = wall["deploy: total"]["median"] / wall["reference: total"]["median"]
    best = wall["deploy: total"]["min"] / wall["reference: total"]["min"]
    extract = wall["deploy --no-compile"]["median"] / wall["tar -x"]["median"]
    extract_best = wall["deploy --no-compile"]["min"] / wall["tar -x"]["min"]
    print(f"\ndeploy + first start / reference: {ratio:.2f}x (minima {best:.2f}x; target 0.5x)")
    print(f"deploy --no-compile / tar -x: {extract:.2f}x (minima {extract_best:.2f}x; target 1.5x)")
    for app, by in result["steady"].items():
        base = by["precompiled (reference)"]["median"]
        print(f"\nsteady start of {app} (PYTHONDONTWRITEBYTECODE=1):")
        for label, value in by.items():
            print(
                f"  {label:<32} {value['median']:.3f} s (min {value['min']:.3f} s)"
                f"  {value['median'] / base:.2f}x"
            )
    size, xz = result["archive_bytes"], result["xz6_bytes"]
    print(f"\narchives {size / 2**20:.1f} MiB; tar.xz -6 {xz / 2**20:.1f} MiB: {size / xz:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--xz", type=Path, action="append", default=[], metavar="DIR")
    parser.add_argument("--modes", action="store_true", help="also time pyc invalidation modes")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bytecode-bench-"))
    results = []
    for source in args.sources:
        scratch = work / source.parent.name
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        result = bench_stack(
            source.absolute(), scratch, args.rounds, args.starts, args.xz, args.modes
        )
        results.append(result)
        render(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
