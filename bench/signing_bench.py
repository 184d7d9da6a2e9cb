"""Benchmark signing and verifying stack metadata with `venvlayers.signing`, beside ssh-keygen.

Run by hand (not part of the tests):

    .venv/bin/python bench/signing_bench.py [--mib 64] [--runs 5] [--json]

For each key type (ed25519, ecdsa nistp256, rsa 3072) it makes a key in a temporary
directory, then times on MIB mebibytes of JSON-like data: loading the key, `sign()`,
`verify()` (the allowed_signers file parsed once), and, when ssh-keygen is installed,
`ssh-keygen -Y sign` and `ssh-keygen -Y verify` on the same file for comparison. Both
hash the whole data (sha512) before one public-key operation, so time grows with the
data size; the key type matters little. Wall times are the median of the runs (min in
brackets).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from venvlayers.signing import AllowedSigners, load_signing_key, sign, verify

VERIFY = ["-n", "venvlayers", "-s"]
KEYS = {"ed25519": ["-t", "ed25519"], "ecdsa256": ["-t", "ecdsa"], "rsa3072": ["-t", "rsa"]}


def _time(action: Callable[[], object], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _data(mib: int) -> bytes:
    row = b'    {"name": "framework-sci", "sha256": "' + b"0123456789abcdef" * 4 + b'"},\n'
    return (b"[\n" + row * (mib * 1024 * 1024 // len(row)) + b"]\n")[: mib * 1024 * 1024]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ssh_keygen = shutil.which("ssh-keygen")
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_path = work / "venvstacks.json"
        data = _data(args.mib)
        data_path.write_bytes(data)
        for name, key_args in KEYS.items():
            key_path = work / name
            if ssh_keygen is None:
                raise SystemExit("this benchmark makes its keys with ssh-keygen")
            subprocess.run(
                [ssh_keygen, "-q", *key_args, "-N", "", "-f", key_path], check=True, env=env
            )
            key = load_signing_key(key_path)
            allowed = work / f"{name}.allowed"
            allowed.write_text(key.allowed_signers_line("bench@example.com") + "\n")
            signers = AllowedSigners.load(allowed)
            signature = sign(data, key)
            row = {
                "load key": _time(lambda p=key_path: load_signing_key(p), args.runs),
                "sign": _time(lambda k=key: sign(data, k), args.runs),
                "verify": _time(lambda s=signature, a=signers: verify(data, s, a), args.runs),
            }
            sig_path = work / f"{name}.sig"
            sig_path.write_bytes(signature)
            row["ssh-keygen sign"] = _time(
                lambda p=key_path: subprocess.run(
                    [ssh_keygen, "-Y", "sign", "-f", p, "-n", "venvlayers"],
                    input=data,
                    capture_output=True,
                    check=True,
                    env=env,
                ),
                args.runs,
            )
            row["ssh-keygen verify"] = _time(
                lambda a=allowed, s=sig_path: subprocess.run(
                    [ssh_keygen, "-Y", "verify", "-f", a, "-I", "bench@example.com", *VERIFY, s],
                    input=data,
                    capture_output=True,
                    check=True,
                    env=env,
                ),
                args.runs,
            )
            results[name] = row
    if args.json:
        print(json.dumps({"mib": args.mib, "runs": args.runs, "results": results}, indent=2))
        return
    print(f"{args.mib} MiB of data, median [min] of {args.runs} runs, seconds")
    for name, row in results.items():
        cells = "  ".join(f"{what} {med:.3f} [{low:.3f}]" for what, (med, low) in row.items())
        print(f"{name:9} {cells}")


if __name__ == "__main__":
    main()
