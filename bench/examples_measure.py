"""Measure an example stack end to end: lock, build, publish, deploy/export, first run, sizes.

    python bench/examples_measure.py examples/sklearn
    python bench/examples_measure.py examples/pytorch --local-wheels /opt/wheels
    python bench/examples_measure.py examples/cuda-split --move \\
        --local-wheels /opt/pypi-more/files --local-wheels /opt/pypi/files

The example is copied into a scratch directory (`--work`, default
/tmp/venvlayers-examples/<name>) without its committed locks, so every stage runs from
scratch there: a fresh `lock`, `build`, `publish`, then `deploy` into a fresh directory
(or `local-export` when this venvlayers has no `deploy` command), then each app is run
twice from the deployed stack (first run: Python compiles and caches .pyc files, unless
`--compile-bytecode` shipped them; second run: warm; PYTHONDONTWRITEBYTECODE is unset). The
committed locks are left alone; the fresh lock is compared with them. uv's cache is used
as is (pass `--cold-uv-cache` for an empty one: everything is downloaded again).

Sizes: each layer's archive, each deployed layer (`du -sb`), and the stack against one
ordinary venv per app (`uv venv` + `uv pip install` of the app's full locked package
set, copied rather than hard-linked from uv's cache so `du` sees real bytes). The venvs
share the base interpreter, which the stack's runtime layer carries itself, so the
comparison favours the venvs.

Prints a Markdown report and writes the numbers as JSON (`--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRATCH_IGNORE = shutil.ignore_patterns(
    "_build", "_artifacts", "_export", "_deploy*", "_venvs", "_work", "__pycache__",
    "requirements", "*.whl", "run.sh",
)  # fmt: skip


@dataclass
class Stage:
    name: str
    seconds: float
    command: str


@dataclass
class AppRun:
    app: str
    command: str
    first_seconds: float
    second_seconds: float
    output: str
    run_command_seconds: float | None = None


@dataclass
class Report:
    example: str
    stages: list[Stage] = field(default_factory=list)
    archives: dict[str, int] = field(default_factory=dict)
    deployed: dict[str, int] = field(default_factory=dict)
    deploy_mode: str = ""
    runs: list[AppRun] = field(default_factory=list)
    venvs: dict[str, int] = field(default_factory=dict)
    venv_seconds: dict[str, float] = field(default_factory=dict)
    lock_differences: list[str] = field(default_factory=list)
    moved_output: str = ""
    moved_seconds: float = 0.0
    moved_stale_references: int | None = None


def log(message: str) -> None:
    print(f"[measure] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    shown = " ".join(cmd)
    log(f"$ {shown}")
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {shown}")
    return done.stdout


def timed(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
    start = time.perf_counter()
    out = run(cmd, cwd=cwd, env=env)
    return time.perf_counter() - start, out


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])  # fmt: skip


def human(size: float) -> str:
    if size < 0:
        return "-" + human(-size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def locked_packages(requirements: Path, layer: str) -> dict[str, str]:
    """The `name==version` pins a layer installs itself (not those from lower layers)."""
    pins: dict[str, str] = {}
    for summary in (requirements / layer).glob("packages-*.txt"):
        for line in summary.read_text().splitlines():
            if line.startswith("# Provided by lower layers"):
                break
            match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
            if match:
                pins[match[1]] = match[2]
    return pins


def has_command(venvlayers: str, name: str) -> bool:
    return subprocess.run([venvlayers, name, "--help"], capture_output=True).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("example", type=Path)
    parser.add_argument("--local-wheels", action="append", default=[], metavar="DIR")
    parser.add_argument("--work", type=Path, help="scratch directory (emptied first)")
    parser.add_argument("--venvlayers", default=str(REPO / ".venv/bin/venvlayers"))
    parser.add_argument("--uv", default=shutil.which("uv") or str(REPO / ".venv/bin/uv"))
    parser.add_argument("--python", default=sys._base_executable,  # type: ignore[attr-defined]
                        help="base interpreter for the comparison venvs")  # fmt: skip
    parser.add_argument("--no-venvs", action="store_true", help="skip the venv comparison")
    parser.add_argument("--export", action="store_true", help="local-export even if deploy exists")
    parser.add_argument(
        "--move", action="store_true", help="then move the deployed stack and run the apps again"
    )
    parser.add_argument(
        "--compile-bytecode", action="store_true", help="publish with --compile-bytecode"
    )
    parser.add_argument("--cold-uv-cache", action="store_true", help="use an empty uv cache")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)

    example = args.example.resolve()
    name = example.name
    work = (args.work or Path(tempfile.gettempdir()) / "venvlayers-examples" / name).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    project = work / "project"
    shutil.copytree(example, project, ignore=SCRATCH_IGNORE)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure first runs the way users get them
    if args.cold_uv_cache:
        env["UV_CACHE_DIR"] = str(work / "uv-cache")
    vl = [args.venvlayers]
    wheels = [opt for d in args.local_wheels for opt in ("--local-wheels", d)]
    report = Report(example=name)

    def stage(label: str, cmd: list[str]) -> str:
        seconds, out = timed(cmd, cwd=project, env=env)
        shown = " ".join(cmd[1:]).replace(str(work), "$WORK")
        report.stages.append(Stage(label, seconds, shown))
        log(f"{label}: {seconds:.1f}s")
        return out

    stage("lock", [*vl, "lock", *wheels])
    for layer_dir in sorted((example / "requirements").iterdir()):
        fresh = locked_packages(project / "requirements", layer_dir.name)
        committed = locked_packages(example / "requirements", layer_dir.name)
        if fresh != committed:
            moved = sorted(set(fresh.items()) ^ set(committed.items()))
            report.lock_differences.append(f"{layer_dir.name}: {moved}")
    stage("build", [*vl, "build", *wheels])
    artifacts = project / "_artifacts"
    compile_pyc = ["--compile-bytecode"] if args.compile_bytecode else []
    stage("publish", [*vl, "publish", "-o", str(artifacts), *compile_pyc])

    metadata_dir = artifacts / "__venvstacks__" / "env_metadata"
    layers = {p.stem: json.loads(p.read_text()) for p in sorted(metadata_dir.glob("*.json"))}
    for layer, meta in layers.items():
        report.archives[layer] = int(meta["archive_size"])

    target = work / "deployed" / "stack"
    use_deploy = has_command(args.venvlayers, "deploy") and not args.export
    if use_deploy:
        report.deploy_mode = "deploy"
        stage("deploy", [*vl, "deploy", str(artifacts), "--target", str(target)])
    else:
        report.deploy_mode = "local-export"
        stage("local-export", [*vl, "local-export", "-o", str(target)])
    for layer in layers:
        deployed = next(target.glob(f"{layers[layer]['install_target']}*"), None)
        report.deployed[layer] = du_bytes(deployed) if deployed else 0

    apps = {k: v for k, v in layers.items() if v.get("app_launch_module")}
    has_run = has_command(args.venvlayers, "run")
    for layer, meta in apps.items():
        python = target / meta["install_target"] / "bin" / "python"
        cmd = [str(python), "-m", meta["app_launch_module"]]
        first, output = timed(cmd, cwd=work, env=env)
        second, _ = timed(cmd, cwd=work, env=env)
        shown = f"{meta['install_target']}/bin/python -m {meta['app_launch_module']}"
        app_run = AppRun(layer, shown, first, second, output)
        if has_run and use_deploy:
            seconds, _ = timed([*vl, "run", layer, "--target", str(target)], cwd=work, env=env)
            app_run.run_command_seconds = seconds
        report.runs.append(app_run)
        log(f"{layer}: first run {first:.1f}s, second {second:.1f}s")

    if args.move:
        moved = work / "moved" / "somewhere-else"
        moved.parent.mkdir(parents=True)
        os.rename(target, moved)
        lines = []
        for meta in apps.values():
            python = moved / meta["install_target"] / "bin" / "python"
            cmd = [str(python), "-m", meta["app_launch_module"]]
            seconds, out = timed(cmd, cwd=work, env=env)
            report.moved_seconds += seconds
            lines.append(f"$ {python.relative_to(work)} -m {meta['app_launch_module']}\n{out}")
            traced = subprocess.run(cmd, cwd=work, env={**env, "LD_DEBUG": "libs"},
                                    capture_output=True, text=True)  # fmt: skip
            stale = (traced.stdout + traced.stderr).count(str(target))
            report.moved_stale_references = (report.moved_stale_references or 0) + stale
        report.moved_output = "\n".join(lines)
        os.rename(moved, target)

    if not args.no_venvs:
        venv_env = {**env, "UV_LINK_MODE": "copy"}
        for layer, meta in apps.items():
            pins: dict[str, str] = {}
            for below in [meta["runtime_layer"], *meta["required_layers"], layer]:
                pins.update(locked_packages(project / "requirements", below))
            venv = work / "venvs" / layer
            reqs = work / "venvs" / f"{layer}.txt"
            reqs.parent.mkdir(parents=True, exist_ok=True)
            reqs.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
            start = time.perf_counter()
            run([args.uv, "venv", "-q", "--python", args.python, str(venv)], env=venv_env)
            links = [opt for d in args.local_wheels for opt in ("--find-links", d)]
            python = str(venv / "bin" / "python")
            if pins:
                install = ["pip", "install", "-q", "--native-tls", "--python", python]
                run([args.uv, *install, "-r", str(reqs), *links], env=venv_env)
            report.venv_seconds[layer] = time.perf_counter() - start
            report.venvs[layer] = du_bytes(venv)

    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


def render(report: Report) -> str:
    out = [f"## {report.example}", "", "| stage | time |", "|---|---:|"]
    out += [f"| `venvlayers {s.command}` | {s.seconds:.1f} s |" for s in report.stages]
    for r in report.runs:
        out.append(f"| first run `{r.command}` | {r.first_seconds:.1f} s |")
        out.append(f"| second run | {r.second_seconds:.1f} s |")
        if r.run_command_seconds is not None:
            out.append(f"| `venvlayers run {r.app}` | {r.run_command_seconds:.1f} s |")
    out += ["", "| layer | archive (tar.zst) | deployed (`du -sb`) |", "|---|---:|---:|"]
    for layer, size in report.archives.items():
        out.append(f"| {layer} | {human(size)} | {human(report.deployed.get(layer, 0))} |")
    total_archives, total_deployed = sum(report.archives.values()), sum(report.deployed.values())
    out.append(f"| **total** | **{human(total_archives)}** | **{human(total_deployed)}** |")
    if report.venvs:
        out += ["", "| one venv per app | size (`du -sb`) | create + install |", "|---|---:|---:|"]
        for layer, size in report.venvs.items():
            out.append(f"| {layer} | {human(size)} | {report.venv_seconds[layer]:.1f} s |")
        venvs = sum(report.venvs.values())
        out.append(f"| **total** | **{human(venvs)}** | |")
        saved = venvs - total_deployed
        app_layers = [report.deployed.get(layer, 0) for layer in report.venvs]
        out += [
            "",
            f"Stack ({report.deploy_mode}, runtime included): {human(total_deployed)}; "
            f"separate venvs (base interpreter not included): {human(venvs)}; "
            f"the stack uses {total_deployed / venvs:.0%} of the venvs' disk "
            f"({human(abs(saved))} {'saved' if saved >= 0 else 'more'}). "
            f"One more app on the same frameworks costs its own app layer "
            f"(here {human(max(app_layers))}) instead of another "
            f"{human(sum(report.venvs.values()) / len(report.venvs))} venv.",
        ]
    if report.lock_differences:
        out += ["", "Fresh lock differs from the committed one (PyPI moved on):"]
        out += [f"- {d}" for d in report.lock_differences]
    else:
        out += ["", "Fresh lock pins exactly what the committed locks pin."]
    for r in report.runs:
        out += ["", f"`{r.command}`:", "```", r.output.rstrip(), "```"]
    if report.moved_output:
        out += ["", "After moving the deployed stack to another directory:", "```",
                report.moved_output.rstrip(), "```",
                f"References to the old location under LD_DEBUG=libs: "
                f"{report.moved_stale_references}"]  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
