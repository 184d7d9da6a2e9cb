"""Benchmark push and pull against a local registry, next to `skopeo copy` of the same stack.

Run by hand (not part of the tests):

    .venv/bin/python bench/oci_bench.py                 # a ~100 MB fake stack
    .venv/bin/python bench/oci_bench.py --mb 500 --runs 5
    .venv/bin/python bench/oci_bench.py --stack _artifacts   # a real published directory

It starts Debian's `docker-registry` on a loopback port (storage in a temporary
directory) and, unless `--stack` is given, publishes a fake stack of incompressible
layers (a runtime, a framework, two apps) with venvlayers' own archive writer. Then, each
run in fresh repositories and directories:

- `push`: our push of the output directory; `skopeo push`: `skopeo copy --all` of the
  same stack as an OCI layout (written by our layout push, hard links) to the registry;
- `pull`: our pull into a new published directory; `skopeo pull`: `skopeo copy --all`
  from the registry into an OCI layout;
- bytes sent for an unchanged re-push and for an app-only update (counted by us, per blob).

Medians are printed; `--json` writes every number.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.plugins.registry import _start, _stop  # noqa: E402
from tests.support.published import FakeLayer, publish_fake  # noqa: E402
from venvlayers.distribution import pull, push  # noqa: E402


def fake_stack(out: Path, megabytes: int, app: str = "app v1") -> Path:
    mb = 1 << 20
    return publish_fake(
        out,
        [
            FakeLayer("runtimes", "cpython-3.11", "bench runtime", bulk=megabytes * mb // 2),
            FakeLayer(
                "frameworks", "framework-big", "bench framework", bulk=megabytes * mb * 2 // 5
            ),
            FakeLayer(
                "applications",
                "app-one",
                app,
                required=["framework-big"],
                launch="one",
                bulk=megabytes * mb // 20,
            ),
            FakeLayer(
                "applications",
                "app-two",
                "bench app two",
                required=["framework-big"],
                launch="two",
                bulk=megabytes * mb // 20,
            ),
        ],
    )


def timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def skopeo(home: Path, *args: str) -> None:
    # a fresh HOME each time: skopeo remembers which repositories hold a blob (its blob
    # info cache) and would mount instead of upload on later runs
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    subprocess.run(["skopeo", *args], check=True, capture_output=True, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the fake stack")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stack", type=Path, help="a published directory to use instead")
    parser.add_argument("--json", type=Path, help="write all measurements here")
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        print("skopeo is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="oci-bench-") as tmp_name:
        return _run(args, Path(tmp_name))


class _Fresh:
    """A registry with empty storage: nothing to mount from, nothing cached server-side.

    skopeo keeps a blob info cache outside $HOME (as root: /var/lib/containers/cache)
    and mounts blobs from any repository it saw them in; a fresh registry each time
    makes every push upload for real.
    """

    count = 0

    def __init__(self, tmp: Path) -> None:
        _Fresh.count += 1
        self.dir = tmp / f"registry{_Fresh.count}"
        self.dir.mkdir()

    def __enter__(self) -> str:
        self.registry = _start(self.dir)
        return self.registry.host

    def __exit__(self, *_exc: object) -> None:
        _stop(self.registry)
        shutil.rmtree(self.dir, ignore_errors=True)


def _run(args: argparse.Namespace, tmp: Path) -> int:
    out = args.stack or fake_stack(tmp / "out", args.mb)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    layout = tmp / "layout"
    push(out, f"oci-layout:{layout}:bench")
    times: dict[str, list[float]] = {"push": [], "skopeo push": [], "pull": [], "skopeo pull": []}
    for run in range(args.runs):
        with _Fresh(tmp) as host:
            theirs = f"docker://{host}/bench/skopeo:bench"
            times["skopeo push"].append(
                timed(
                    lambda theirs=theirs, run=run: skopeo(
                        tmp / f"home-push{run}",
                        "copy",
                        "--all",
                        "--dest-tls-verify=false",
                        f"oci:{layout}:bench",
                        theirs,
                    )
                )
            )
        with _Fresh(tmp) as host:
            ref = f"oci://{host}/bench/ours:bench"
            times["push"].append(timed(lambda ref=ref: push(out, ref)))
            times["pull"].append(timed(lambda ref=ref, run=run: pull(ref, tmp / f"mirror{run}")))
            theirs = f"docker://{host}/bench/ours:bench"
            times["skopeo pull"].append(
                timed(
                    lambda theirs=theirs, run=run: skopeo(
                        tmp / f"home-pull{run}",
                        "copy",
                        "--all",
                        "--src-tls-verify=false",
                        theirs,
                        f"oci:{tmp}/copy{run}:bench",
                    )
                )
            )
            shutil.rmtree(tmp / f"mirror{run}")
            shutil.rmtree(tmp / f"copy{run}")
            if run == args.runs - 1:
                unchanged = push(out, ref)
                if args.stack is None:
                    update = push(fake_stack(tmp / "v2", args.mb, app="app v2"), ref, force=True)
                    update_bytes = update.bytes_sent
                    update_blobs = [b.name for b in update.blobs if b.action == "sent"]
                else:
                    update_bytes, update_blobs = -1, []
    print(
        f"stack: {size / (1 << 20):.1f} MiB in {len(list(out.glob('*.tar.*')))} archives, "
        f"{args.runs} runs (median, seconds)"
    )
    for name, values in times.items():
        med = statistics.median(values)
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:12} {med:6.2f} s  {size / (1 << 20) / med:7.1f} MiB/s   [{shown}]")
    print(
        f"  unchanged re-push: {unchanged.bytes_sent} bytes sent, unchanged={unchanged.unchanged}"
    )
    if update_bytes >= 0:
        print(f"  app-only update:   {update_bytes} bytes sent ({', '.join(update_blobs)})")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": size,
                    "times": times,
                    "unchanged_bytes": unchanged.bytes_sent,
                    "update_bytes": update_bytes,
                    "update_blobs": update_blobs,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
