#!/usr/bin/env python3
"""Reference deployer for stacks published by `venvlayers publish` (standard library only).

Copy this file into an application that has to install a published stack itself.
It follows the protocol in docs/deploying.md, step by step, and is deliberately
simpler than `venvlayers deploy` (no downloads, no parallelism, no transaction
journal, no garbage collection):

    python3 deploy_reference.py deploy SOURCE_DIR TARGET_DIR [--app NAME ...]
    python3 deploy_reference.py run TARGET_DIR APP [-- ARGS ...]

Archive formats: `tar.gz` and `tar.xz` (and `zip`) need nothing but the standard
library. `tar.zst` (venvlayers' default) needs the `zstandard` package or the `zstd`
command; publish with `--format tar.xz` for consumers that have neither.
Needs a Python with tarfile's extraction filters (3.8.17+, 3.9.17+, 3.10.12+, 3.11.4+,
3.12+).
"""

import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile

LAYER_CONFIG = os.path.join("share", "venv", "metadata", "venvstacks_layer.json")
STATE = ".deploy_reference.json"  # install_target -> archive sha256 of what is deployed
CATEGORIES = ("runtimes", "frameworks", "applications")


class Refused(Exception):
    """The source or an archive is not acceptable; nothing was changed."""


# -- step 1: read the metadata and select the layers --------------------------------------


def this_platform():
    """The `target_platform` value for this machine."""
    machine = platform.machine().lower()
    arm = machine in ("arm64", "aarch64")
    if sys.platform.startswith("linux"):
        return "linux_aarch64" if arm else "linux_x86_64"
    if sys.platform == "darwin":
        return "macosx_arm64" if arm else "macosx_x86_64"
    if sys.platform == "win32":
        return "win_arm64" if arm else "win_amd64"
    raise Refused(f"unsupported platform {sys.platform}")


def plain_name(name):
    """Names from metadata become paths: allow plain file names only."""
    if not isinstance(name, str) or not name or name.startswith(".") or name in ("..",):
        raise Refused(f"bad name in metadata: {name!r}")
    if any(c in name for c in "/\\:\0"):
        raise Refused(f"bad name in metadata: {name!r}")
    return name


def read_layers(source):
    """Every layer for this platform, by install_target (category added as `category`)."""
    path = os.path.join(source, "__venvstacks__", "venvstacks.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    here = this_platform()
    layers = {}
    for category in CATEGORIES:
        for entry in data["layers"].get(category, []):
            if entry.get("target_platform") != here:
                continue
            entry = dict(entry, category=category)
            layers[plain_name(entry["install_target"])] = entry
    if not layers:
        raise Refused(f"{path} has no layers for {here}")
    return layers


def lower_layers(entry):
    """install_targets this layer needs beside it: frameworks (sys.path order), runtime."""
    if entry["category"] == "runtimes":
        return []
    return [*entry.get("required_layers", []), entry["runtime_layer"]]


def select(layers, names):
    """The named apps (all layers if none) and everything below them, lower layers first."""
    if names:
        wanted = []
        for name in names:
            found = [
                t
                for t, e in layers.items()
                if name in (t, e["layer_name"], e["layer_name"].replace("app-", "", 1))
            ]
            if not found:
                raise Refused(f"no layer named {name!r}")
            wanted.append(found[0])
    else:
        wanted = list(layers)
    ordered = []

    def visit(target, path):
        if target in ordered:
            return
        if target in path:
            raise Refused(f"dependency cycle at {target}")
        if target not in layers:
            raise Refused(f"{path[-1]} needs layer {target!r}, which the metadata lacks")
        for low in lower_layers(layers[target]):
            visit(plain_name(low), [*path, target])
        ordered.append(target)

    for category in CATEGORIES:  # runtimes, then frameworks, then applications
        for target in wanted:
            if layers[target]["category"] == category:
                visit(target, [])
    return [layers[t] for t in ordered]


# -- step 2: verify the archive before reading anything from it ---------------------------


def verify(archive, entry):
    size = os.path.getsize(archive)
    if size != entry["archive_size"]:
        raise Refused(f"{archive}: {size} bytes, expected {entry['archive_size']}")
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != entry["archive_hashes"]["sha256"]:
        raise Refused(f"{archive}: sha256 does not match the metadata")


# -- step 3: extract safely into a temporary sibling --------------------------------------


def open_tar(archive):
    """A streaming TarFile, and a process to wait for (zstd), or None."""
    if not archive.endswith((".tar.zst", ".tzst")):
        return tarfile.open(archive, mode="r:*"), None
    try:
        import zstandard  # optional
    except ImportError:
        zstd = shutil.which("zstd")
        if zstd is None:
            raise Refused(f"{archive}: tar.zst needs the zstandard package or zstd") from None
        proc = subprocess.Popen([zstd, "-dcq", archive], stdout=subprocess.PIPE)
        return tarfile.open(fileobj=proc.stdout, mode="r|"), proc
    raw = open(archive, "rb")  # noqa: SIM115  (closed with the stream)
    stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return tarfile.open(fileobj=stream, mode="r|"), None


def extract(archive, dest, top):
    """Unpack `archive` into the empty directory `dest`; it must hold only `top/`."""
    if not hasattr(tarfile, "data_filter"):
        raise Refused("this Python lacks tarfile extraction filters; upgrade it")
    if archive.endswith(".zip"):
        return extract_zip(archive, dest, top)
    tf, proc = open_tar(archive)
    try:
        for member in tf:
            if member.name.split("/")[0] != top:
                raise Refused(f"{archive}: member {member.name!r} is outside {top}/")
            # the `data` filter refuses absolute paths, '..', devices and links leaving dest
            tf.extract(member, dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Refused(f"{archive}: cannot extract: {exc}") from None
    finally:
        tf.close()
        if proc is not None and proc.wait() != 0:
            raise Refused(f"{archive}: zstd failed")


def extract_zip(archive, dest, top):
    root = os.path.realpath(dest)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename.rstrip("/")
            parts = name.split("/")
            if parts[0] != top or ".." in parts or name.startswith("/") or "\\" in name:
                raise Refused(f"{archive}: unsafe member {info.filename!r}")
            path = os.path.join(dest, *parts)
            mode = info.external_attr >> 16
            if info.filename.endswith("/") or stat.S_ISDIR(mode):
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8")
                where = os.path.realpath(os.path.join(os.path.dirname(path), link))
                if link.startswith("/") or not where.startswith(os.path.join(root, top)):
                    raise Refused(f"{archive}: link {name!r} points outside its layer")
                os.symlink(link, path)
                continue
            if mode and not stat.S_ISREG(mode):
                raise Refused(f"{archive}: {name!r} is not a regular file")
            with zf.open(info) as src, open(path, "xb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(path, 0o755 if mode & 0o111 else 0o644)


# -- step 4: postinstall, with the runtime layer's python ----------------------------------


def read_config(layer_dir):
    with open(os.path.join(layer_dir, LAYER_CONFIG), encoding="utf-8") as f:
        return json.load(f)


def postinstall(target, staged, entry):
    config = read_config(staged)
    if entry["category"] == "runtimes":
        python = os.path.join(staged, config["python"])  # its own interpreter
    else:
        # base_python is relative to the layer; the staged layer is a sibling of the
        # deployed ones, so it resolves to TARGET/<runtime_layer>/bin/python3.X
        python = os.path.normpath(os.path.join(staged, config["base_python"]))
        runtime_dir = os.path.join(target, entry["runtime_layer"]) + os.sep
        if not python.startswith(runtime_dir):
            raise Refused(f"{entry['install_target']}: base_python is outside its runtime layer")
    # -I: none of our PYTHON* variables reach it. Besides making links, postinstall
    # compiles the layer's bytecode with this (the runtime's) interpreter, before the
    # layer is moved into place: apps then start at full speed from their first run,
    # even on a read-only tree or with PYTHONDONTWRITEBYTECODE (docs/deploying.md,
    # "Start-up speed"). Add "--no-compile" to skip that. Files that do not compile are
    # warnings on stderr, not failures.
    proc = subprocess.run([python, "-I", os.path.join(staged, "postinstall.py")])
    if proc.returncode != 0:
        raise Refused(f"postinstall of {entry['install_target']} failed")


# -- step 5: move into place ---------------------------------------------------------------


def move_into_place(staged, final):
    """Replace `final` by `staged`. `venvlayers deploy` swaps the two atomically on Linux
    (renameat2 RENAME_EXCHANGE); here there is a short moment without `final`."""
    if os.path.lexists(final):
        parent, name = os.path.split(final)
        old = os.path.join(parent, f".{name}.old-{os.getpid()}")
        os.rename(final, old)
        os.rename(staged, final)
        shutil.rmtree(old)
    else:
        os.rename(staged, final)


def deploy(source, target, names):
    layers = select(read_layers(source), names)
    os.makedirs(target, exist_ok=True)
    state_path = os.path.join(target, STATE)
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = {}
    todo = []
    for entry in layers:
        name, sha = entry["install_target"], entry["archive_hashes"]["sha256"]
        if state.get(name) == sha and os.path.isdir(os.path.join(target, name)):
            continue  # already deployed from the same archive
        archive = os.path.join(source, plain_name(entry["archive_name"]))
        verify(archive, entry)
        todo.append((entry, archive))
    for entry, archive in todo:  # lower layers first
        name = entry["install_target"]
        work = os.path.join(target, f".{name}.unpack-{os.getpid()}")
        staged = os.path.join(target, f".{name}.new-{os.getpid()}")
        os.mkdir(work)
        try:
            extract(archive, work, name)
            os.rename(os.path.join(work, name), staged)
            postinstall(target, staged, entry)
            move_into_place(staged, os.path.join(target, name))
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(staged, ignore_errors=True)
        state[name] = entry["archive_hashes"]["sha256"]
        with open(state_path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
        os.replace(state_path + ".tmp", state_path)
        print("deployed", name)


# -- running an app -------------------------------------------------------------------------


def run(target, app, args):
    candidates = sorted(
        d
        for d in os.listdir(target)
        if not d.startswith(".") and d.split("@")[0] in (app, "app-" + app)
    )
    if not candidates:
        raise Refused(f"no app {app!r} in {target}")
    # the highest version, if several are deployed (app-x@2 over app-x@1)
    layer_dir = os.path.join(target, max(candidates, key=lambda d: int(d.partition("@")[2] or 0)))
    config = read_config(layer_dir)
    python = os.path.join(layer_dir, config["python"])
    # -P (3.11+): a file in the current directory must not shadow the launch module
    major, minor = (int(x) for x in config["py_version"].split(".")[:2])
    safe_path = ["-P"] if (major, minor) >= (3, 11) else []
    return subprocess.call([python, *safe_path, "-m", config["launch_module"], *args])


def main(argv):
    try:
        if len(argv) >= 3 and argv[0] == "deploy":
            names = [argv[i + 1] for i, a in enumerate(argv) if a == "--app" and i + 1 < len(argv)]
            deploy(argv[1], argv[2], names)
            return 0
        if len(argv) >= 3 and argv[0] == "run":
            rest = argv[3:]
            return run(argv[1], argv[2], rest[1:] if rest[:1] == ["--"] else rest)
    except (Refused, OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
