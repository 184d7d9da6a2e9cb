"""app-infer: compile a small model with TorchScript and run it, plus a few tensor ops.

Shows the shared torch layer doing something different from app-train: JIT scripting,
a save/load round trip through memory, and numpy interop with the runtime layer's numpy.
"""

import io

import layerinfo
import numpy
import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(x), dim=-1)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    scripted = torch.jit.script(Classifier().eval())
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)

    batch = torch.from_numpy(numpy.linspace(-3.0, 3.0, 12, dtype=numpy.float32).reshape(3, 4))
    with torch.no_grad():
        probabilities = loaded(batch)
    print(f"app-infer: torch {torch.__version__}, a TorchScript model saved to memory and reloaded")
    print("  (untrained: seeded random weights; 3 inputs -> class probabilities)")
    for row, probs in enumerate(probabilities.numpy()):
        shown = "  ".join(f"{p:.3f}" for p in probs)
        print(f"  input {row}: class {int(probs.argmax())}  probabilities {shown}")
    matrix = torch.arange(1.0, 10.0).reshape(3, 3)
    det = torch.linalg.det(matrix + torch.eye(3)).item()
    trace = torch.trace(matrix @ matrix.T).item()
    print(f"  A = [[1 2 3] [4 5 6] [7 8 9]]: det(A + I) = {det:.1f}, trace(A A^T) = {trace:.0f}")
    print("packages by layer:")
    print(layerinfo.report({"numpy": numpy, "torch": torch}))


if __name__ == "__main__":
    main()
