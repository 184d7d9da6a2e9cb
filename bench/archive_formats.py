"""Benchmark layer archive formats: publish time, size and extraction time.

Run by hand (not part of the tests):

    .venv/bin/python bench/archive_formats.py                  # builds a realistic venv
    .venv/bin/python bench/archive_formats.py --source DIR     # any directory tree

Without `--source` it creates (once) a virtual environment holding numpy, scipy, pandas
and scikit-learn under the work directory, installed from PyPI with uv.

For each format and level it measures writing (wall and CPU seconds, CPU counting
every thread of this process), the archive size, and extraction with
`venvlayers.archives.extract_archive`; and, as references, single-threaded
`tar -c | xz -6 -T1` and `tar -c | gzip -6` with `tar -x` of their output. Then it
checks the targets of the publishing issue for the default format.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from venvlayers.archives import (
    DEFAULT_FORMAT,
    ArchiveFormat,
    default_level,
    extract_archive,
    write_archive,
)

CLAMP = 1_700_000_000
PACKAGES = ["numpy", "scipy", "pandas", "scikit-learn"]
DEFAULT_CASES = [
    "tar.zst:3",
    "tar.zst:6",
    "tar.zst:10",
    "tar.zst:12",
    "tar.zst:15",
    "tar.xz:6",
    "tar.gz:6",
    "zip:6",
]


_EXTRACT_ROOT: list[Path] = []  # set once from the command line


@dataclass(frozen=True)
class Result:
    name: str
    write_wall: float
    write_cpu: float
    size: int
    extract_wall: float
    extract_cpu: float


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    _EXTRACT_ROOT.append(Path(args.extract_root) if args.extract_root else work)
    source = Path(args.source) if args.source else _realistic_tree(work / "bench-venv")
    content = _content_bytes(source)
    print(f"source: {source} ({content / 1e6:.1f} MB in {_count(source)} entries)")
    print(f"threads: {args.threads or os.cpu_count()} (0 = all cores)\n")
    results: list[Result] = []
    for case in args.cases:
        results.append(_measure_ours(source, work, case, args.threads, args.repeat))
        _print(results[-1])
    if not args.no_baselines:
        for compressor in ("gzip", "xz"):
            results.append(_measure_cli(source, work, compressor, args.repeat))
            _print(results[-1])
    # the default case is measured last among ours, so its archive is the one left over
    tar_x = _measure_tar_x_of_ours(work, args.repeat)
    if tar_x is not None:
        results.append(tar_x)
        _print(tar_x)
    _print_targets(results)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="directory to archive (default: build a venv)")
    parser.add_argument(
        "--workdir", default=os.path.join(tempfile.gettempdir(), "venvlayers-bench-archives")
    )
    parser.add_argument(
        "--case",
        dest="cases",
        action="append",
        help="FORMAT:LEVEL to measure, repeatable (default: a spread of formats and levels)",
    )
    parser.add_argument(
        "--extract-root",
        help="extract under this directory (e.g. a tmpfs, to leave the disk out of it)",
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--no-baselines", action="store_true", help="skip tar|xz and tar|gzip")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    cases = args.cases or DEFAULT_CASES
    default = f"{DEFAULT_FORMAT.value}:{default_level(DEFAULT_FORMAT)}"
    args.cases = [c for c in cases if c != default] + ([default] if default in cases else [])
    return args


def _realistic_tree(venv: Path) -> Path:
    """A venv with the scientific stack; absolute interpreter links are replaced."""
    if not (venv / ".bench-ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        subprocess.run([uv, "pip", "install", "-q", *PACKAGES], check=True, env=env)
        # A published layer carries no absolute links (the build step rewrites them).
        for link in (venv / "bin").iterdir():
            if link.is_symlink() and os.path.isabs(os.readlink(link)):
                link.unlink()
        (venv / ".bench-ready").write_text("")
    return venv


def _content_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _count(root: Path) -> int:
    return sum(1 for _ in root.rglob("*"))


def _skip_absolute_links(source: Path) -> Callable[[str], bool]:
    def exclude(rel: str) -> bool:
        path = source / rel
        return path.is_symlink() and os.path.isabs(os.readlink(path))

    return exclude


def _timed(action: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def _measure_ours(source: Path, work: Path, case: str, threads: int, repeat: int) -> Result:
    fmt_name, _, level_text = case.partition(":")
    fmt = ArchiveFormat(fmt_name)
    level = int(level_text) if level_text else default_level(fmt)
    archive = work / f"layer.{fmt.value}"

    def write() -> None:
        write_archive(
            source,
            archive,
            root_name="layer",
            fmt=fmt,
            level=level,
            clamp_mtime=CLAMP,
            threads=threads,
            exclude=_skip_absolute_links(source),
        )

    write_wall, write_cpu = _best(repeat, lambda: _timed(write))
    extract_wall, extract_cpu = _best(repeat, lambda: _extract_timed(archive, work))
    name = f"{fmt.value}:{level}"
    return Result(name, write_wall, write_cpu, archive.stat().st_size, extract_wall, extract_cpu)


def _best(repeat: int, run: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    return min((run() for _ in range(repeat)), key=lambda pair: pair[0])


def _extract_timed(archive: Path, work: Path) -> tuple[float, float]:
    dest = _fresh(_EXTRACT_ROOT[0] / "extract")
    os.sync()  # don't let write-back of earlier runs slow this one down
    timing = _timed(lambda: extract_archive(archive, dest))
    shutil.rmtree(dest)
    return timing


def _tar_extract_timed(archive: Path, work: Path, flags: list[str]) -> tuple[float, float]:
    dest = _fresh(_EXTRACT_ROOT[0] / "extract")
    os.sync()
    timing = _child_timed(["tar", "-C", str(dest), *flags, str(archive)])
    shutil.rmtree(dest)
    return timing


def _measure_cli(source: Path, work: Path, compressor: str, repeat: int) -> Result:
    """`tar -c | COMPRESSOR -6` on one core, and `tar -x` of the result."""
    suffix = {"xz": "xz", "gzip": "gz"}[compressor]
    archive = work / f"baseline.tar.{suffix}"
    command = ["xz", "-6", "-T1", "-c"] if compressor == "xz" else ["gzip", "-6", "-c"]
    shell = (
        f"tar -C {source.parent} -c --exclude=__pycache__ {source.name} | "
        f"{' '.join(command)} > {archive}"
    )
    write_wall, write_cpu = _child_timed(["sh", "-c", shell])
    flags = ["-xJf" if compressor == "xz" else "-xzf"]
    extract_wall, extract_cpu = _best(repeat, lambda: _tar_extract_timed(archive, work, flags))
    name = f"tar|{compressor} -6 -T1" if compressor == "xz" else f"tar|{compressor} -6"
    return Result(name, write_wall, write_cpu, archive.stat().st_size, extract_wall, extract_cpu)


def _measure_tar_x_of_ours(work: Path, repeat: int) -> Result | None:
    """GNU tar extracting our default archive: the yardstick for deploy speed."""
    archive = work / f"layer.{DEFAULT_FORMAT.value}"
    if not archive.exists() or DEFAULT_FORMAT is not ArchiveFormat.TAR_ZST:
        return None
    wall, cpu = _best(repeat, lambda: _tar_extract_timed(archive, work, ["--zstd", "-xf"]))
    return Result(f"tar -x of {archive.name}", 0.0, 0.0, archive.stat().st_size, wall, cpu)


def _child_timed(command: list[str]) -> tuple[float, float]:
    before = os.times()
    wall = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - wall
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _print(r: Result) -> None:
    print(
        f"{r.name:18s} write {r.write_wall:7.2f}s wall {r.write_cpu:7.2f}s cpu"
        f"   {r.size / 1e6:8.2f} MB   extract {r.extract_wall:6.2f}s wall"
        f" {r.extract_cpu:6.2f}s cpu",
        flush=True,
    )


def _print_targets(results: list[Result]) -> None:
    by_name = {r.name: r for r in results}
    default = by_name.get(f"{DEFAULT_FORMAT.value}:{default_level(DEFAULT_FORMAT)}")
    xz, gz = by_name.get("tar|xz -6 -T1"), by_name.get("tar|gzip -6")
    ours_xz = by_name.get("tar.xz:6")
    if default is None or xz is None or gz is None:
        return
    print(f"\ndefault {default.name} against the targets of the publishing issue:")
    checks = [
        ("publish >= 8x faster than tar|xz -6", xz.write_wall / default.write_wall, 8.0, True),
        ("size <= 1.25x tar|xz -6", default.size / xz.size, 1.25, False),
        ("extract >= 3x faster than tar -xJ", xz.extract_wall / default.extract_wall, 3.0, True),
        ("publish faster than tar|gzip -6", gz.write_wall / default.write_wall, 1.0, True),
        ("size <= 0.85x tar|gzip -6", default.size / gz.size, 0.85, False),
    ]
    if ours_xz is not None:
        checks.append(
            (
                "extract >= 3x faster than our tar.xz",
                ours_xz.extract_wall / default.extract_wall,
                3.0,
                True,
            )
        )
    tar_x = by_name.get(f"tar -x of layer.{DEFAULT_FORMAT.value}")
    if tar_x is not None:
        checks.append(
            ("our extraction <= 1.5x tar -x", default.extract_wall / tar_x.extract_wall, 1.5, False)
        )
    for label, value, limit, at_least in checks:
        ok = value >= limit if at_least else value <= limit
        print(f"  {'ok  ' if ok else 'MISS'} {label}: {value:.2f}")


if __name__ == "__main__":
    sys.exit(main())
