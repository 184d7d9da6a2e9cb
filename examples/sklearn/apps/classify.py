"""app-classify: train and evaluate a small classifier on a dataset bundled with scikit-learn.

Deterministic: fixed split and a deterministic solver, so every run prints the same report.
"""

import layerinfo
import numpy
import scipy
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)

    names = [str(n) for n in data.target_names]
    print("app-classify: breast cancer diagnosis, StandardScaler + LogisticRegression")
    print(
        f"  {len(data.data)} samples, {data.data.shape[1]} features;"
        f" train {len(x_train)} / test {len(x_test)}"
    )
    print(f"  test accuracy: {accuracy_score(y_test, predicted):.3f}")
    matrix = confusion_matrix(y_test, predicted)
    width = max(len(n) for n in names)
    print("  confusion matrix (rows: true, columns: predicted)")
    print(f"    {'':<{width}}  " + "  ".join(f"{n:>{width}}" for n in names))
    for name, row in zip(names, matrix, strict=True):
        print(f"    {name:<{width}}  " + "  ".join(f"{v:>{width}}" for v in row))
    print("packages by layer:")
    print(layerinfo.report({"numpy": numpy, "scipy": scipy, "scikit-learn": sklearn}))


if __name__ == "__main__":
    main()
