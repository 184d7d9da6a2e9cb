"""app-train: a tiny training loop on random data, on the CPU.

Fits a two-layer network to a noisy linear target. Seeded and single-threaded, so
every run prints the same losses.
"""

import layerinfo
import numpy
import torch
from torch import nn


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic float sums, whatever the machine's core count
    inputs = torch.randn(512, 8)
    true_weights = torch.randn(8, 1)
    targets = inputs @ true_weights + 0.1 * torch.randn(512, 1)

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    print(f"app-train: torch {torch.__version__}, 512 samples x 8 features, MLP 8-16-1, Adam")
    for epoch in range(1, 201):
        optimiser.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimiser.step()
        if epoch in (1, 50, 100, 200):
            print(f"  epoch {epoch:>3}  loss {loss.item():.4f}")
    print("packages by layer:")
    print(layerinfo.report({"numpy": numpy, "torch": torch}))


if __name__ == "__main__":
    main()
