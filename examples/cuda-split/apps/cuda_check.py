"""app-cuda-check: load the CUDA build of torch from a layered stack and report on it.

torch's shared libraries live in framework-torch; the CUDA libraries they need
(libcudart, libcublas, libcudnn, libnccl, ...) live in framework-cuda. This module
first asks the dynamic linker alone to load `libtorch_cuda.so` (no torch import, so
torch's own Python fallback that preloads CUDA libraries from sys.path cannot help):
that only works if the RUNPATH entries venvlayers added point at the layer below.
Then it imports torch and prints what it was built with.

Works without a GPU: `torch.cuda.is_available()` is then False, as expected.
"""

import ctypes
import importlib.util
import os
import sys
from pathlib import Path


def layer_of(path: Path) -> str:
    """The stack layer directory a file belongs to (the directory above its `lib/`)."""
    parts = path.parts
    return parts[parts.index("lib") - 1] if "lib" in parts else "?"


def mapped_cuda_libraries() -> dict[str, str]:
    """The NVIDIA CUDA libraries mapped into this process: file name -> layer."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and "/nvidia/" in fields[5] and ".so" in fields[5]:
            path = Path(fields[5])
            found.setdefault(path.name, layer_of(path))
    return found


def main() -> None:
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.origin is not None, "torch is not installed"
    torch_lib = Path(spec.origin).parent / "lib" / "libtorch_cuda.so"
    print(f"LD_LIBRARY_PATH            {os.environ.get('LD_LIBRARY_PATH', '(not set)')}")
    ctypes.CDLL(str(torch_lib))  # raises OSError if a CUDA library cannot be found
    libraries = mapped_cuda_libraries()
    layers = ", ".join(sorted(set(libraries.values()))) or "nowhere"
    print(f"dlopen {torch_lib.name:<19} ok, from {layer_of(torch_lib)}, before importing torch")
    print(f"  CUDA libraries loaded    {len(libraries)}, all from {layers}:")
    line = "   "
    for name in sorted(libraries):
        if len(line) + len(name) > 86:
            print(line)
            line = "   "
        line += f" {name}"
    print(line)

    import torch

    print("import torch               ok")
    print(f"torch.__version__          {torch.__version__}")
    print(f"torch.version.cuda         {torch.version.cuda}")
    print(f"cuDNN version              {torch.backends.cudnn.version()}")
    print(f"torch.cuda.is_available()  {torch.cuda.is_available()}")
    print(f"sys.prefix                 {sys.prefix}")


if __name__ == "__main__":
    main()
