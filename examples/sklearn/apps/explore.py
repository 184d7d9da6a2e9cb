"""app-explore: summarise the iris data set with numpy and plot it to a PNG with matplotlib.

Uses the non-interactive Agg backend, so it needs no display. The PNG goes to the
directory given as the first argument, or to a temporary directory removed afterwards.
"""

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; set before pyplot is imported

import layerinfo
import matplotlib.pyplot as plt
import numpy
import PIL
import sklearn
from PIL import Image
from sklearn.datasets import load_iris


def summarise() -> tuple[numpy.ndarray, numpy.ndarray, list[str], list[str]]:
    iris = load_iris()
    species = [str(n) for n in iris.target_names]
    features = [str(f).removesuffix(" (cm)") for f in iris.feature_names]
    print(f"app-explore: iris data set, {len(iris.data)} flowers, mean size per species (cm)")
    width = max(len(s) for s in species)
    print(f"    {'':<{width}}  " + "  ".join(f"{f:>12}" for f in features))
    for index, name in enumerate(species):
        means = iris.data[iris.target == index].mean(axis=0)
        print(f"    {name:<{width}}  " + "  ".join(f"{m:>12.2f}" for m in means))
    return iris.data, iris.target, species, features


def plot(data, target, species, features, out_dir: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    for index, name in enumerate(species):
        rows = data[target == index]
        ax.scatter(rows[:, 2], rows[:, 3], label=name, s=14)
    ax.set_xlabel(features[2] + " (cm)")
    ax.set_ylabel(features[3] + " (cm)")
    ax.set_title("iris: petal size by species")
    ax.legend()
    path = out_dir / "iris-petals.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    data, target, species, features = summarise()
    with tempfile.TemporaryDirectory() as tmp:
        keep = len(sys.argv) > 1
        out_dir = Path(sys.argv[1]) if keep else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = plot(data, target, species, features, out_dir)
        with Image.open(path) as image:
            width, height = image.size
        where = str(path) if keep else "in a temporary directory (pass a directory to keep it)"
    print(f"  plot: {width}x{height} PNG ({matplotlib.get_backend()} backend) {where}")
    print("packages by layer:")
    print(
        layerinfo.report(
            {"numpy": numpy, "matplotlib": matplotlib, "pillow": PIL, "scikit-learn": sklearn}
        )
    )


if __name__ == "__main__":
    main()
