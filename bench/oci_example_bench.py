"""Benchmark push, pull and deploy of a real published stack against a local registry.

Run by hand (not part of the tests), e.g. for the pytorch example:

    .venv/bin/python bench/oci_example_bench.py --project /tmp/x/pytorch \\
        --build-arg=--local-wheels=/opt/wheels --runs 3
    .venv/bin/python bench/oci_example_bench.py --published DIR --app-update DIR2

`--published DIR` is the stack (default: PROJECT/_artifacts). The app-only update is
either `--app-update DIR2` (a second published directory that differs from DIR in one
app layer) or made here from `--project`: DIR is copied with hard links, a comment is
appended to the launch module of `--app` (default: the first app), the project is
built (`--build-arg` passed on) and published into the copy, then the launch module is
restored and the project rebuilt, so the project ends as it began.

Every command is the CLI a user runs (`python -m venvlayers ...`, `skopeo ...`) in a
subprocess with a clean environment, timed by wall clock. Each run starts fresh
registries (Debian's `docker-registry` on free loopback ports, storage in the scratch
directory, a generated config with the access log on), so nothing is mounted or cached
from an earlier run; skopeo gets a fresh HOME. Traffic goes through a TCP relay
(`os.splice`, no copies through Python) that counts the bytes each way, headers
included; the registry's access log names the requests. `--direct` skips the relay
(times only).

Measured, per run (medians of `--runs`; the two sides of each comparison run in
alternating order, each after an `os.sync()`, so neither always finds the page cache
warmer or the disk busier with what the other wrote):

- `push`: `venvlayers push DIR oci://...` into an empty registry, against
  `skopeo copy --all oci:LAYOUT docker://...` of the same stack as an OCI layout
  (written by `venvlayers push DIR oci-layout:...`, hard links) into another one;
- `pull`: `venvlayers pull oci://... NEWDIR`, against `skopeo copy --all docker://...
  oci:NEWDIR`;
- `deploy oci://...` into a fresh directory, against `deploy DIR` (the published
  directory itself).

Once, after the runs: an unchanged re-push (ours and skopeo's), the app-only update
pushed under a new tag (ours and skopeo's: bytes and which blobs were uploaded), the
update deployed from the registry over the first deployment and from the published
directory over another, and `run APP --from oci://...` (first run: deploys; second run:
nothing to fetch).

Prints a report; `--json FILE` writes every number (bench/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
MiB = 1 << 20


# -- a counting TCP relay ---------------------------------------------------------------


class Relay:
    """Listens on a loopback port and forwards every connection to `upstream`.

    Bytes are moved with `os.splice` through a pipe (the kernel copies them; Python
    only counts), so the relay costs the measured tools almost nothing.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.up = 0  # client -> registry
        self.down = 0  # registry -> client
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def reset(self) -> tuple[int, int, int]:
        with self._lock:
            counts = (self.up, self.down, self.connections)
            self.up = self.down = self.connections = 0
            return counts

    def close(self) -> None:
        self._closing = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
            ends = [2]  # the second pump to stop closes both sockets
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up, ends), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool, ends: list[int]) -> None:
        read, write = os.pipe()
        try:
            while True:
                try:
                    n = os.splice(src.fileno(), write, 1 << 20)
                except OSError:
                    n = 0
                if n == 0:
                    break
                left = n
                while left:
                    left -= os.splice(read, dst.fileno(), left)
                with self._lock:
                    if up:
                        self.up += n
                    else:
                        self.down += n
        except OSError:
            pass
        finally:
            os.close(read)
            os.close(write)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                ends[0] -= 1
                last = ends[0] == 0
            if last:
                src.close()
                dst.close()


# -- registries -------------------------------------------------------------------------


_ACCESS = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d+) (?P<size>\d+|-)'
)


@dataclass
class Request:
    method: str
    path: str
    status: int
    size: int
    """Response body bytes, as the registry logs them."""


class Registry:
    """A `docker-registry` with empty storage on a free port, optionally behind a relay."""

    count = 0

    def __init__(self, scratch: Path, relay: bool) -> None:
        Registry.count += 1
        self.dir = scratch / f"registry{Registry.count}"
        self.dir.mkdir()
        self.want_relay = relay
        self.relay: Relay | None = None

    def __enter__(self) -> Registry:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (self.dir / "storage").mkdir()
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        )
        self.log = self.dir / "access.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(REGISTRY_BINARY), "serve", str(config)],
                stdout=out,
                stderr=subprocess.DEVNULL,
                env={"PATH": os.defpath, "HOME": str(self.dir)},
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("docker-registry did not start") from None
                time.sleep(0.05)
        if self.want_relay:
            self.relay = Relay(("127.0.0.1", port))
            self.host = f"127.0.0.1:{self.relay.port}"
        else:
            self.host = f"127.0.0.1:{port}"
        self._seen = 0
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.relay:
            self.relay.close()
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def traffic(self) -> Traffic:
        """Requests and bytes since the last call (the access log is flushed per line)."""
        up, down, connections = self.relay.reset() if self.relay else (-1, -1, 0)
        time.sleep(0.05)
        lines = self.log.read_text(errors="replace").splitlines()
        new, self._seen = lines[self._seen :], len(lines)
        requests = []
        for line in new:
            match = _ACCESS.search(line)
            if match:
                size = match["size"]
                requests.append(
                    Request(
                        match["method"],
                        match["path"],
                        int(match["status"]),
                        int(size) if size.isdigit() else 0,
                    )
                )
        return Traffic(up, down, connections, requests)


@dataclass
class Traffic:
    up: int
    down: int
    connections: int
    requests: list[Request] = field(default_factory=list)

    def uploads(self) -> list[str]:
        """Digests of blobs whose upload was completed (PUT ...?digest=)."""
        found = []
        for r in self.requests:
            if r.method == "PUT" and "/blobs/uploads/" in r.path and r.status == 201:
                match = re.search(r"digest=sha256%3A([0-9a-f]{64})", r.path)
                if match:
                    found.append(match[1])
        return found

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for r in self.requests:
            kind = (
                "blob" if "/blobs/" in r.path else "manifest" if "/manifests/" in r.path else "v2"
            )
            if "/blobs/uploads/" in r.path:
                kind = "upload"
            key = f"{r.method} {kind}"
            kinds[key] = kinds.get(key, 0) + 1
        return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))


# -- commands ---------------------------------------------------------------------------


def clean_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.defpath,
        "HOME": str(home),
        "LC_ALL": "C.UTF-8",
        "VENVLAYERS_DATA_DIR": str(home / "venvlayers-data"),
        # skopeo keeps a blob info cache (for mounts) under XDG dirs when not root
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }


@dataclass
class Timed:
    seconds: float
    up: int = -1
    down: int = -1
    requests: str = ""
    uploaded: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, scratch: Path, direct: bool) -> None:
        self.scratch = scratch
        self.direct = direct
        self.homes = 0

    def home(self) -> Path:
        self.homes += 1
        return self.scratch / f"home{self.homes}"

    def venvlayers(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "venvlayers", *map(str, args)]

    def run(
        self,
        command: Sequence[str | Path],
        registry: Registry | None = None,
        home: Path | None = None,
    ) -> Timed:
        if registry is not None:
            registry.traffic()  # start counting from here
        env = clean_env(home or self.home())
        os.sync()  # what earlier steps wrote is not flushed on this one's time
        start = time.perf_counter()
        done = subprocess.run(list(map(str, command)), env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(
                f"failed ({done.returncode}): {' '.join(map(str, command))}\n"
                f"{done.stdout}{done.stderr}"
            )
        result = Timed(seconds)
        if registry is not None:
            traffic = registry.traffic()
            result.up, result.down = traffic.up, traffic.down
            result.requests = traffic.summary()
            result.uploaded = traffic.uploads()
        return result

    def skopeo(self, *args: str | Path) -> list[str]:
        return ["skopeo", *map(str, args)]


def archives(published: Path) -> dict[str, tuple[str, int]]:
    """digest hex -> (file name, size) of every file of a published directory."""
    import hashlib

    found = {}
    for path in sorted(published.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            found[digest] = (str(path.relative_to(published)), path.stat().st_size)
    return found


# -- the app-only update ----------------------------------------------------------------


def make_update(
    project: Path, published: Path, dest: Path, app: str | None, build_args: Sequence[str]
) -> tuple[Path, str]:
    """`dest`: `published` with one app's launch module changed; (dest, app name)."""
    import tomllib

    spec = tomllib.loads((project / "venvstacks.toml").read_text())
    apps = spec.get("applications", [])
    chosen = next((a for a in apps if app in (None, a["name"])), None)
    if chosen is None:
        raise SystemExit(f"no application {app!r} in {project / 'venvstacks.toml'}")
    module = project / chosen["launch_module"]
    original = module.read_bytes()
    shutil.copytree(published, dest, copy_function=os.link)
    env = dict(os.environ)  # the user's own build: their runtime and uv caches

    def venvlayers(*args: str | Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "venvlayers", "-q", *map(str, args)],
            cwd=project,
            env=env,
            check=True,
        )

    try:
        module.write_bytes(original + f"\n# benchmark update {time.time()}\n".encode())
        venvlayers("build", *build_args)
        venvlayers("publish", "--output-dir", dest)
    finally:
        module.write_bytes(original)
        venvlayers("build", *build_args)
    return dest, chosen["name"]


# -- the benchmark ----------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_bench(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    published: Path = (args.published or args.project / "_artifacts").absolute()
    bench = Bench(scratch, args.direct)
    vl = bench.venvlayers
    if args.app_update:
        update, app = args.app_update.absolute(), args.app
    elif args.project:
        print("making the app-only update ...", file=sys.stderr)
        update, app = make_update(
            args.project.absolute(), published, scratch / "update", args.app, args.build_arg
        )
    else:
        update, app = None, args.app
    if app is None:
        meta = json.loads((published / "__venvstacks__/venvstacks.json").read_text())
        app = meta["layers"]["applications"][0]["layer_name"].removeprefix("app-")
    files = archives(published)
    listed = sorted(files.values(), key=lambda f: -f[1])[:6]
    if update:
        files.update(archives(update))
    size = sum(p.stat().st_size for p in published.rglob("*") if p.is_file())
    layout = scratch / "layout"
    bench.run(vl("push", "-q", published, f"oci-layout:{layout}:v1"))
    if update:
        bench.run(vl("push", "-q", update, f"oci-layout:{layout}:v2"))

    times: dict[str, list[Timed]] = {
        k: [] for k in ("push", "skopeo push", "pull", "skopeo pull", "deploy oci://", "deploy DIR")
    }
    once: dict[str, Timed] = {}
    relay = not args.direct

    def one_run(run: int) -> None:
        print(f"run {run + 1} of {args.runs} ...", file=sys.stderr)
        last = run == args.runs - 1
        with Registry(scratch, relay) as theirs, Registry(scratch, relay) as ours:
            ref = f"oci://{ours.host}/bench/stack"
            mirror, copy = scratch / f"pull{run}", scratch / f"skopeo-pull{run}"
            target_oci = scratch / f"target-oci{run}"
            target_dir = scratch / f"target-dir{run}"

            def skopeo_push(tag: str = "v1") -> Timed:
                return bench.run(
                    bench.skopeo(
                        "copy", "--all", "--dest-tls-verify=false",
                        f"oci:{layout}:{tag}", f"docker://{theirs.host}/bench/stack:{tag}",
                    ),
                    theirs,
                )  # fmt: skip

            steps = {
                "push": lambda: bench.run(vl("push", published, f"{ref}:v1"), ours),
                "skopeo push": skopeo_push,
                "pull": lambda: bench.run(vl("pull", f"{ref}:v1", mirror), ours),
                "skopeo pull": lambda: bench.run(
                    bench.skopeo(
                        "copy",
                        "--all",
                        "--src-tls-verify=false",
                        f"docker://{ours.host}/bench/stack:v1",
                        f"oci:{copy}:v1",
                    ),
                    ours,
                ),
                "deploy oci://": lambda: bench.run(
                    vl("deploy", f"{ref}:v1", "--target", target_oci), ours
                ),
                "deploy DIR": lambda: bench.run(vl("deploy", published, "--target", target_dir)),
            }
            # each pair in both orders, alternately: what runs second finds the page
            # cache warmer and the disk busier with what the first one wrote
            pairs = (
                ("push", "skopeo push"),
                ("pull", "skopeo pull"),
                ("deploy oci://", "deploy DIR"),
            )
            for pair in pairs:
                for name in pair if run % 2 == 0 else pair[::-1]:
                    times[name].append(steps[name]())
            shutil.rmtree(mirror)
            shutil.rmtree(copy)
            if last:
                once["skopeo re-push"] = skopeo_push()
                if update:
                    once["skopeo update push"] = skopeo_push("v2")
                once["unchanged re-push"] = bench.run(vl("push", published, f"{ref}:v1"), ours)
                once["unchanged re-push, --force"] = bench.run(
                    vl("push", "--force", published, f"{ref}:v1"), ours
                )
                once["unchanged deploy oci://"] = bench.run(
                    vl("deploy", f"{ref}:v1", "--target", target_oci), ours
                )
                if update:
                    once["update push"] = bench.run(vl("push", update, f"{ref}:v2"), ours)
                    once["update deploy oci://"] = bench.run(
                        vl("deploy", f"{ref}:v2", "--target", target_oci), ours
                    )
                    once["update deploy DIR"] = bench.run(
                        vl("deploy", update, "--target", target_dir)
                    )
                    once["update pull (over v1)"] = _pull_update(bench, ours, ref, scratch)
                home = bench.home()
                tag = "v2" if update else "v1"
                once["run --from (first)"] = bench.run(
                    vl("run", app, "--from", f"{ref}:{tag}"), ours, home
                )
                once["run --from (again)"] = bench.run(
                    vl("run", app, "--from", f"{ref}:{tag}"), ours, home
                )
            shutil.rmtree(target_oci)
            shutil.rmtree(target_dir)

    for run in range(args.runs):
        one_run(run)
    return {
        "published": str(published),
        "update": str(update) if update else None,
        "app": app,
        "size": size,
        "files": {h: list(v) for h, v in files.items()},
        "largest": [list(f) for f in listed],
        "direct": args.direct,
        "runs": {k: [asdict(t) for t in v] for k, v in times.items()},
        "once": {k: asdict(t) for k, t in once.items()},
    }


def _pull_update(bench: Bench, registry: Registry, ref: str, scratch: Path) -> Timed:
    mirror = scratch / "pull-update"
    bench.run(bench.venvlayers("pull", "-q", f"{ref}:v1", mirror))
    result = bench.run(bench.venvlayers("pull", f"{ref}:v2", mirror), registry)
    shutil.rmtree(mirror)
    return result


def render(result: dict[str, Any]) -> None:
    size = result["size"]
    files = result["files"]
    print(f"\n{result['published']}: {size / MiB:.1f} MiB")
    for name, nbytes in result["largest"]:
        shown = f"{nbytes / MiB:9.2f} MiB" if nbytes >= MiB else f"{nbytes / 1024:9.1f} KiB"
        print(f"  {name:<48} {shown}")
    print(
        "\nwall time, median of", len(result["runs"]["push"]), "runs (seconds; MiB/s of the stack)"
    )
    for name, runs in result["runs"].items():
        seconds = [r["seconds"] for r in runs]
        med = median(seconds)
        shown = ", ".join(f"{s:.2f}" for s in seconds)
        traffic = ""
        if runs and runs[-1]["up"] >= 0:
            traffic = (
                f"  up {runs[-1]['up'] / MiB:8.2f} MiB  down {runs[-1]['down'] / MiB:8.2f} MiB"
            )
        print(f"  {name:<14} {med:6.2f} s {size / MiB / med:7.1f} MiB/s{traffic}  [{shown}]")
    print("\nonce")
    for name, t in result["once"].items():
        cells = [f"{t['seconds']:6.2f} s"]
        if t["up"] >= 0:
            cells.append(f"up {t['up']:>10,} B  down {t['down']:>10,} B")
        print(f"  {name:<28} {'  '.join(cells)}")
        if t["requests"]:
            print(f"  {'':<28} requests: {t['requests']}")
        if t["uploaded"]:
            names = [files.get(h, (h[:12], 0))[0] for h in t["uploaded"]]
            print(f"  {'':<28} blobs uploaded: {', '.join(names)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, help="a published directory")
    parser.add_argument("--app-update", type=Path, help="the same stack with one app changed")
    parser.add_argument("--project", type=Path, help="make the app-only update from this project")
    parser.add_argument("--app", help="the app to change (and to run); default: the first")
    parser.add_argument(
        "--build-arg", action="append", default=[], help="passed to `venvlayers build`"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--direct", action="store_true", help="no counting relay")
    parser.add_argument("--scratch", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write all measurements here")
    args = parser.parse_args()
    if args.published is None and args.project is None:
        parser.error("give --published DIR or --project DIR")
    for tool in ("skopeo",):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    if not REGISTRY_BINARY.exists():
        print(f"{REGISTRY_BINARY} is missing (apt-get install docker-registry)", file=sys.stderr)
        return 2
    with _scratch(args.scratch) as scratch:
        result = run_bench(args, scratch)
    render(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


@contextmanager
def _scratch(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="oci-example-bench-", dir=given))
    else:
        work = Path(tempfile.mkdtemp(prefix="oci-example-bench-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
