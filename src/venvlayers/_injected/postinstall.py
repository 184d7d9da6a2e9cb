"""Finish installing this layer (run by `venvlayers deploy`, or by hand after unpacking).

Usage: <base runtime python> -I postinstall.py [--no-compile]

Stdlib only, and written for any Python 3.7+ the runtime layer may carry (PEP 552). It reads
`share/venv/metadata/venvstacks_layer.json` beside it and creates what archives cannot
hold: the links from a layered environment's `bin/python` to its runtime layer
(archives never contain links leaving their own layer). Everything else in a
venvlayers layer is already relative to the layer, so a deployed stack keeps working
when its whole directory is moved. Safe to run more than once.

Then, unless `--no-compile`, it compiles every `.py` below the layer's `lib` folder to
bytecode, on every core, with the interpreter running it (the runtime's: bytecode is
specific to its version). The `.pyc` files are checked-hash ones (PEP 552): valid
wherever the layer is moved or copied, with no write needed at start-up, and a source
edited later is noticed. Existing checked-hash `.pyc` files that match their source
(shipped in the archive) are kept; any other `.pyc` is replaced. A file that does not
compile is listed as a warning on stderr (`postinstall: warning: cannot compile PATH:
REASON`); it does not fail the install.

`postinstall.py --compile-worker` is the same compiler for `venvlayers deploy`: it
reads requests `{"layer": LAYER_DIR, "paths": [layer-relative .py paths], "names":
FINAL_DIR or null}` from stdin, one JSON object per line, and answers each with one
JSON line (see `_compile_batch`).
"""

import hashlib
import json
import os
import sys
from typing import Any, Dict, List, NoReturn, Optional, Tuple

LAYER_CONFIG = os.path.join("share", "venv", "metadata", "venvstacks_layer.json")


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"postinstall: {message}\n")
    sys.exit(1)


def _inside(parent: str, path: str) -> bool:
    parent = os.path.normpath(parent)
    path = os.path.normpath(path)
    return path == parent or path.startswith(parent + os.sep)


def _load_config(layer_dir: str) -> Dict[str, Any]:
    path = os.path.join(layer_dir, LAYER_CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {path}: {exc}")
    for key in ("python", "base_python", "site_dir", "pylib_dirs"):
        if key not in config:
            _fail(f"{path} lacks {key!r}; the layer archive is incomplete")
    if not isinstance(config, dict):
        _fail(f"{path} is not a JSON object")
    return config


def _check_peer(layer_dir: str, relative: str, what: str) -> str:
    """Paths in the config may only point into this layer or its sibling layers."""
    target = os.path.normpath(os.path.join(layer_dir, relative))
    if not _inside(os.path.dirname(layer_dir), target):
        _fail(f"{what} {relative!r} points outside the deployment directory")
    return target


def _link(link_path: str, target: str) -> None:
    """Make `link_path` a symlink to `target` (relative), replacing what is there."""
    if os.path.islink(link_path) and os.readlink(link_path) == target:
        return
    tmp = link_path + ".postinstall-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link_path)


def _link_base_python(layer_dir: str, config: Dict[str, Any]) -> None:
    python = _check_peer(layer_dir, config["python"], "python")
    base = _check_peer(layer_dir, config["base_python"], "base_python")
    if python == base:
        return  # a runtime layer: its interpreter is its own
    if not os.path.exists(base):
        _fail(
            f"the runtime layer is missing: {base} does not exist; deploy the runtime "
            "layer beside this one"
        )
    bin_dir = os.path.dirname(python)
    os.makedirs(bin_dir, exist_ok=True)
    _link(python, os.path.relpath(base, bin_dir))
    version = config.get("py_version", "")
    minor = ".".join(version.split(".")[:2])
    names = ["python3"] + ([f"python{minor}"] if minor else [])
    for name in names:
        _link(os.path.join(bin_dir, name), os.path.basename(python))


def _check_lower_layers(layer_dir: str, config: Dict[str, Any]) -> None:
    missing = []
    for relative in config["pylib_dirs"]:
        target = _check_peer(layer_dir, relative, "pylib_dirs entry")
        if not os.path.isdir(target):
            missing.append(relative)
    if missing:
        _fail(
            f"lower layers are missing ({', '.join(missing)}); deploy every layer this one requires"
        )


# -- bytecode -------------------------------------------------------------------------

_ISOLATION: List[str] = []  # a reproducible worker's interpreter flags (for --compile-one)
_PYC_MODE = 0o644  # readable by all who can read the sources, whatever the umask
_BATCH = 48  # files per task: large enough that passing tasks costs little


def _source_files(layer_dir: str, config: Dict[str, Any]) -> List[str]:
    """The `.py` files below the layer's lib folder (the top of `site_dir`), sorted."""
    top = config["site_dir"].replace("\\", "/").split("/")[0] or "lib"
    found = []
    for parent, dirs, files in os.walk(os.path.join(layer_dir, top)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel_parent = os.path.relpath(parent, layer_dir).replace(os.sep, "/")
        for name in files:
            if name.endswith(".py") and not os.path.islink(os.path.join(parent, name)):
                found.append(f"{rel_parent}/{name}")
    return sorted(found)


def _compile_batch(
    layer_dir: str, paths: List[str], names_dir: Optional[str] = None, fresh: bool = False
) -> Dict[str, Any]:
    """Compile layer-relative `.py` paths; what was written, kept and refused.

    The code records each file as `names_dir/PATH` when given (where the layer will
    be: importing it there then costs nothing extra), else as the bare layer-relative
    PATH (independent of where the layer is). Importing puts the real path in either
    way (CPython fixes `co_filename` on load), so tracebacks stay right after a move.

    `fresh` (for published archives): every file is compiled again, each in a process
    that has compiled nothing else (see `_compile_fresh`), so the bytes depend only on
    the source and the interpreter.

    `{"compiled": [[pyc path, size, sha256, mode], ...], "kept": N,
    "failed": [[py path, reason], ...]}`, paths relative to the layer (POSIX).
    """
    import importlib.util

    magic = importlib.util.MAGIC_NUMBER
    compiled: List[Tuple[str, int, str, int]] = []
    failed: List[Tuple[str, str]] = []
    kept = 0
    for rel in paths:
        source_path = os.path.join(layer_dir, *rel.split("/"))
        try:
            with open(source_path, "rb") as f:
                source = f.read()
        except OSError as exc:
            failed.append((rel, f"cannot read it: {exc.strerror}"))
            continue
        source_hash = importlib.util.source_hash(source)
        pyc_path = importlib.util.cache_from_source(source_path)
        if not fresh and _valid_hash_pyc(pyc_path, magic, source_hash):
            kept += 1
            continue
        name = os.path.join(names_dir, *rel.split("/")) if names_dir else rel
        if fresh:
            body, problem = _compile_fresh(source, name)
        else:
            body, problem = _compile_here(source, name)
        if body is None:
            failed.append((rel, problem or "the compiler failed"))
            continue
        # PEP 552 header: flags 0b11 = hash-based, check the source
        data = magic + (3).to_bytes(4, "little") + source_hash + body
        _write_pyc(pyc_path, data)
        pyc_rel = os.path.relpath(pyc_path, layer_dir).replace(os.sep, "/")
        compiled.append((pyc_rel, len(data), hashlib.sha256(data).hexdigest(), _PYC_MODE))
    return {"compiled": compiled, "kept": kept, "failed": failed}


def _compile_here(source: bytes, name: str) -> Tuple[Optional[bytes], Optional[str]]:
    """The marshalled code of `source`, or None and why it does not compile."""
    import marshal

    try:
        code = compile(source, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
        return None, _describe(exc)
    return marshal.dumps(code), None


def _compile_fresh(source: bytes, name: str) -> Tuple[Optional[bytes], Optional[str]]:
    """`_compile_here` in a process that has compiled nothing before.

    CPython's marshal output depends on the compiling process's history (which strings
    earlier files interned, the reference counts of shared constants: CPython issue
    129724), so a file compiled after others can differ by a byte from the same file
    compiled alone. A fork of this worker, which has compiled nothing, is "alone" every
    time; where there is no fork, a new interpreter with the same flags is.
    """
    if not hasattr(os, "fork"):
        import subprocess

        command = [sys.executable, *_ISOLATION, os.path.abspath(__file__), "--compile-one", name]
        proc = subprocess.run(command, input=source, capture_output=True)
        return _fresh_reply(proc.stdout)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile, answer, vanish (no cleanup of the parent's state)
        try:
            os.close(read_end)
            _answer_fresh(write_end, source, name)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        reply = f.read()
    os.waitpid(pid, 0)
    return _fresh_reply(reply)


def _answer_fresh(fd: int, source: bytes, name: str) -> None:
    body, problem = _compile_here(source, name)
    reply = b"+" + body if body is not None else b"-" + (problem or "").encode("utf-8")
    with os.fdopen(fd, "wb") as f:
        f.write(reply)


def _fresh_reply(reply: bytes) -> Tuple[Optional[bytes], Optional[str]]:
    if reply[:1] == b"+":
        return reply[1:], None
    if reply[:1] == b"-":
        return None, reply[1:].decode("utf-8", "replace")
    return None, "the compiler process died"


def _valid_hash_pyc(pyc_path: str, magic: bytes, source_hash: bytes) -> bool:
    try:
        with open(pyc_path, "rb") as f:
            header = f.read(16)
    except OSError:
        return False
    flags = int.from_bytes(header[4:8], "little")
    return header[:4] == magic and flags == 3 and header[8:16] == source_hash


def _write_pyc(pyc_path: str, data: bytes) -> None:
    """Write atomically: a process starting meanwhile sees no pyc or a whole one."""
    os.makedirs(os.path.dirname(pyc_path), exist_ok=True)
    tmp = f"{pyc_path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PYC_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.chmod(tmp, _PYC_MODE)
        os.replace(tmp, pyc_path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


def _compile_task(task: Tuple[str, List[str]]) -> Dict[str, Any]:
    return _compile_batch(*task)


def compile_layer(layer_dir: str, config: Dict[str, Any]) -> int:
    """Compile the layer's sources on every core; the number of files that failed."""
    paths = _source_files(layer_dir, config)
    tasks = [(layer_dir, paths[i : i + _BATCH]) for i in range(0, len(paths), _BATCH)]
    jobs = _cpu_count()
    if jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(tasks))) as pool:
            results = list(pool.map(_compile_task, tasks))
    else:
        results = [_compile_task(task) for task in tasks]
    failures = 0
    for result in results:
        for rel, reason in result["failed"]:
            sys.stderr.write(f"postinstall: warning: cannot compile {rel}: {reason}\n")
            failures += 1
    return failures


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def compile_worker(reproducible: bool = False) -> int:
    """Serve `_compile_batch` over stdin/stdout for `venvlayers deploy` and `publish`.

    `reproducible` (publish): started with `-S -B -X pycache_prefix=EMPTY_DIR`, so that
    what this process imported was compiled from source, not loaded from `.pyc` files
    whose own bytes depend on how they were made; then every file is compiled `fresh`,
    in a fork of this process, whose state must therefore be the same for every file:
    a first request on a file of its own runs every step of the loop once (json
    interns "[" and "]" the first time it writes a list, for example), so nothing that
    follows changes what a fork inherits.
    """
    _die_with_parent()
    if reproducible:
        import importlib.util  # noqa: F401  (before the prefix goes: nothing imported later)
        import marshal  # noqa: F401

        prefix = sys.pycache_prefix or ""
        _ISOLATION[:] = ["-I", "-S", "-B", "-X", f"pycache_prefix={prefix}"]
        sys.pycache_prefix = None  # our .pyc files go beside their sources
        _warm_up(prefix)
    for line in sys.stdin:
        _serve_one(line, reproducible)
    return 0


def _serve_one(line: str, fresh: bool, write: bool = True) -> None:
    request = json.loads(line)
    reply = _compile_batch(request["layer"], request["paths"], request.get("names"), fresh)
    text = json.dumps(reply) + "\n"
    if write:
        sys.stdout.write(text)
        sys.stdout.flush()


def _warm_up(scratch: str) -> None:
    """Serve one request for two small modules (one that does not compile) in `scratch`."""
    if not scratch:
        import tempfile

        scratch = tempfile.gettempdir()
    layer = os.path.join(scratch, f"venvlayers-warm-up-{os.getpid()}")
    lib = os.path.join(layer, "lib")
    os.makedirs(lib, exist_ok=True)
    sources = {"a.py": "import os\n\nX = [1, (2, 3), {4: '5'}, {6}]\n", "b.py": "print 'py2'\n"}
    for name, text in sources.items():
        with open(os.path.join(lib, name), "w", encoding="utf-8") as f:
            f.write(text)
    request = {"layer": layer, "paths": [f"lib/{name}" for name in sources], "names": None}
    try:
        _serve_one(json.dumps(request), True, write=False)
    finally:
        for parent, dirs, files in os.walk(layer, topdown=False):
            for name in files:
                os.remove(os.path.join(parent, name))
            for name in dirs:
                os.rmdir(os.path.join(parent, name))
        os.rmdir(layer)


def _die_with_parent() -> None:
    """Stop writing into a staging directory once the deploy that started us is gone."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere the worker ends at its next read, when stdin closes
    import contextlib
    import ctypes
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the deploy handles Ctrl-C
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PDEATHSIG


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--compile-worker"] and set(args[1:]) <= {"--reproducible"}:
        return compile_worker(reproducible="--reproducible" in args)
    if args[:1] == ["--compile-one"] and len(args) == 2:  # _compile_fresh without fork
        _answer_fresh(sys.stdout.fileno(), sys.stdin.buffer.read(), args[1])
        return 0
    unknown = [a for a in args if a != "--no-compile"]
    if unknown:
        _fail(f"unknown arguments {' '.join(unknown)} (usage: postinstall.py [--no-compile])")
    layer_dir = os.path.dirname(os.path.abspath(__file__))
    config = _load_config(layer_dir)
    if os.name != "nt":
        _link_base_python(layer_dir, config)
    _check_lower_layers(layer_dir, config)
    if "--no-compile" not in args:
        compile_layer(layer_dir, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
