"""Tests for engine.datasets: IDX reading, bundled MNIST, folders, digits8, validation."""

import gzip
import hashlib
import json
import shutil
import time

import numpy as np
import pytest

import engine.datasets as ds
from engine.datasets import (
    Dataset,
    DatasetError,
    dataset_names,
    list_datasets,
    load_dataset,
    read_idx,
)

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array of 1 or 3 dims as an IDX file."""
    magic = 0x0801 if arr.ndim == 1 else 0x0803
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_folder(folder, n_train=20, n_test=6, size=28, gz=True, sums=False, seed=0):
    """A small MNIST-style folder of random images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        FILES[0]: rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        FILES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        FILES[2]: rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        FILES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    if sums:
        (folder / "SHA256SUMS.raw").write_text("".join(lines))
    return arrays


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


@pytest.fixture
def mnist_copy(tmp_path):
    """A copy of the bundled MNIST folder (images symlinked: they are big and never modified)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in FILES:
        src = ds.BUNDLED_MNIST_DIR / (name + ".gz")
        if "images" in name:
            (folder / src.name).symlink_to(src)
        else:
            shutil.copy(src, folder / src.name)
    shutil.copy(ds.BUNDLED_MNIST_DIR / "SHA256SUMS.raw", folder / "SHA256SUMS.raw")
    return folder


def corrupt_labels(folder):
    """Rewrite t10k labels as a valid IDX file with one label changed."""
    path = folder / "t10k-labels-idx1-ubyte.gz"
    labels = read_idx(path).copy()
    labels[0] = (labels[0] + 1) % 10
    path.write_bytes(gzip.compress(idx_bytes(labels)))


# --------------------------------------------------------------------------- bundled MNIST


def test_bundled_mnist_shapes_and_labels(mnist):
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28, 1) and mnist.x_test.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.int64
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == np.int64
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:3].tolist() == [7, 2, 1]
    assert set(np.unique(mnist.y_train)) == set(range(10))
    assert set(np.unique(mnist.y_test)) == set(range(10))
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0
    assert mnist.input_shape == (28, 28, 1) and mnist.num_classes == 10
    assert mnist.class_names == tuple("0123456789")
    assert "MNIST" in mnist.description


def test_arrays_are_read_only(mnist):
    for arr in (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        mnist.x_train[0, 0, 0, 0] = 1


def test_second_load_is_cached_and_limits_slice(mnist):
    t = time.perf_counter()
    again = load_dataset("mnist", train_limit=100, test_limit=np.int64(10))
    assert time.perf_counter() - t < 0.2
    assert np.shares_memory(again.x_train, mnist.x_train)
    assert again.x_train.shape == (100, 28, 28, 1) and again.y_train.shape == (100,)
    assert again.x_test.shape == (10, 28, 28, 1) and again.y_test.shape == (10,)
    assert np.array_equal(again.y_train, mnist.y_train[:100])
    clipped = load_dataset("mnist", train_limit=10**9, test_limit=10**9)
    assert len(clipped.x_train) == 60000 and len(clipped.x_test) == 10000


def test_batch_scales_to_unit_range(mnist):
    idx = np.array([3, 0, 7])
    b = mnist.batch(mnist.x_train, idx)
    assert b.shape == (3, 28, 28, 1) and b.dtype == np.float32
    assert 0.0 <= b.min() and b.max() == pytest.approx(1.0)
    np.testing.assert_allclose(b, mnist.x_train[idx] / 255.0, rtol=1e-6)
    b64 = Dataset.batch(mnist.x_test, slice(0, 5), dtype=np.float64)
    assert b64.shape == (5, 28, 28, 1) and b64.dtype == np.float64
    assert b.flags.writeable  # a fresh array the caller may modify


def test_dataset_is_frozen(mnist):
    with pytest.raises(AttributeError):
        mnist.name = "other"


# --------------------------------------------------------------------------- read_idx


def test_read_idx_gz_and_raw(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = tmp_path / "images.idx"
    raw.write_bytes(idx_bytes(arr))
    gz = tmp_path / "images-no-gz-extension"  # detected by magic bytes, not by name
    gz.write_bytes(gzip.compress(idx_bytes(arr)))
    for path in (raw, gz, str(raw)):
        out = read_idx(path)
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        assert np.array_equal(out, arr)
    labels = np.array([1, 2, 3], dtype=np.uint8)
    (tmp_path / "labels.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    assert read_idx(tmp_path / "labels.gz").tolist() == [1, 2, 3]


def test_read_idx_bundled_file_gz_matches_raw(tmp_path):
    src = ds.BUNDLED_MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress(src.read_bytes()))
    a, b = read_idx(src), read_idx(raw)
    assert a.shape == (10000,) and np.array_equal(a, b)


def test_read_idx_truncated_raw(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((4, 5, 5), np.uint8))[:-7])
    with pytest.raises(DatasetError, match="truncated") as e:
        read_idx(path)
    assert "train-images-idx3-ubyte" in str(e.value) and "(4, 5, 5)" in str(e.value)


def test_read_idx_truncated_gzip(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = gzip.compress(idx_bytes(np.arange(3000, dtype=np.uint8).reshape(3, 1000, 1)))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz") as e:
        read_idx(path)
    assert "truncated or corrupt" in str(e.value)


def test_read_idx_trailing_data_and_short_header(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"\0")
    with pytest.raises(DatasetError, match="trailing data"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(path)


@pytest.mark.parametrize("header", [
    b"\x00\x00\x08\x02",  # 2-d: neither images nor labels
    b"\x00\x00\x0d\x03",  # float32 dtype
    b"PK\x03\x04",        # a zip file
    b"\x89PNG",           # an image
])
def test_read_idx_wrong_magic(tmp_path, header):
    path = tmp_path / "garbage.bin"
    path.write_bytes(header + bytes(64))
    with pytest.raises(DatasetError, match="garbage.bin") as e:
        read_idx(path)
    assert "0x00000803" in str(e.value) and "magic" in str(e.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


# --------------------------------------------------------------------------- checksums


def test_corrupt_bundled_copy_is_reported(mnist_copy, monkeypatch):
    corrupt_labels(mnist_copy)
    monkeypatch.setattr(ds, "BUNDLED_MNIST_DIR", mnist_copy)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist")
    msg = str(e.value)
    assert msg.startswith("t10k-labels-idx1-ubyte: SHA256 of decompressed content is ")
    assert "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" in msg
    assert "corrupt" in msg and "re-install the package" in msg
    # verify=False loads it anyway
    assert load_dataset("mnist", verify=False).y_test.shape == (10000,)


def test_user_mnist_folder_checked_against_known_sums(mnist_copy):
    (mnist_copy / "SHA256SUMS.raw").unlink()
    good = load_dataset("mnist", path=mnist_copy)
    assert good.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    corrupt_labels(mnist_copy)
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte: SHA256") as e:
        load_dataset("mnist", path=mnist_copy)
    assert "known sums of MNIST" in str(e.value)


def test_folder_with_own_sums(tmp_path):
    folder = tmp_path / "mine"
    write_folder(folder, sums=True)
    assert load_dataset("fashion-mnist", path=folder).x_train.shape == (20, 28, 28, 1)
    # Rewrite one file with different content: its own SHA256SUMS.raw no longer matches.
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(20, np.uint8))))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte: SHA256"):
        load_dataset("fashion-mnist", path=folder)
    assert load_dataset("fashion-mnist", path=folder, verify=False).y_train.sum() == 0


# --------------------------------------------------------------------------- folders


def test_folder_loading_raw_files(tmp_path):
    arrays = write_folder(tmp_path / "fm", gz=False, n_train=12, n_test=4)
    d = load_dataset("fashion-mnist", path=tmp_path / "fm", train_limit=10)
    assert d.name == "fashion-mnist" and d.num_classes == 10
    assert d.class_names[0] == "T-shirt/top" and d.class_names[-1] == "Ankle boot"
    assert d.x_train.shape == (10, 28, 28, 1) and d.x_test.shape == (4, 28, 28, 1)
    assert np.array_equal(d.x_train[..., 0], arrays[FILES[0]][:10])
    assert np.array_equal(d.y_test, arrays[FILES[3]].astype(np.int64))
    assert d.y_train.dtype == np.int64


def test_folder_in_subfolder(tmp_path):
    write_folder(tmp_path / "outer" / "fashion")
    d = load_dataset("fashion-mnist", path=tmp_path / "outer")
    assert d.x_train.shape == (20, 28, 28, 1)


def test_folder_missing_files_listed(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", path=tmp_path)
    msg = str(e.value)
    assert "missing" in msg and "t10k-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    assert "train-images-idx3-ubyte" not in msg


def test_folder_label_count_mismatch(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    with pytest.raises(DatasetError, match="6 images but .* 3 labels"):
        load_dataset("fashion-mnist", path=tmp_path)


def test_folder_bad_path(tmp_path):
    with pytest.raises(DatasetError, match="not an existing folder"):
        load_dataset("mnist", path=tmp_path / "does-not-exist")
    with pytest.raises(DatasetError, match="path"):
        load_dataset("mnist", path=12)


def test_fashion_mnist_not_installed(tmp_path, monkeypatch):
    where = tmp_path / "no-such-dir"
    monkeypatch.setattr(ds, "FASHION_MNIST_DIRS", (where,))
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist")
    msg = str(e.value)
    assert str(where) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "path=" in msg
    entry = next(d for d in list_datasets() if d["name"] == "fashion-mnist")
    assert entry["available"] is False and entry["source"] is None


def test_fashion_mnist_default_location(tmp_path, monkeypatch):
    write_folder(tmp_path / "fashion-mnist")
    monkeypatch.setattr(ds, "FASHION_MNIST_DIRS", (tmp_path / "fashion-mnist",))
    assert load_dataset("fashion-mnist").x_test.shape == (6, 28, 28, 1)
    entry = next(d for d in list_datasets() if d["name"] == "fashion-mnist")
    assert entry["available"] is True and entry["source"] == str(tmp_path / "fashion-mnist")


# --------------------------------------------------------------------------- digits8


def test_digits8(mnist):
    d = load_dataset("digits8")
    assert d.name == "digits8" and d.input_shape == (8, 8, 1) and d.num_classes == 10
    assert d.x_train.shape == (1500, 8, 8, 1) and d.x_train.dtype == np.uint8
    assert d.x_test.shape == (500, 8, 8, 1) and d.x_test.dtype == np.uint8
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert np.array_equal(d.y_train, mnist.y_train[:1500])
    assert np.array_equal(d.y_test, mnist.y_test[:500])
    assert not d.x_train.flags.writeable
    # pixel (r, c) is the rounded mean of MNIST pixels [2+3r : 5+3r, 2+3c : 5+3c]
    img = mnist.x_train[7, :, :, 0].astype(float)
    for r, c in [(0, 0), (3, 4), (7, 7), (2, 5)]:
        expected = round(img[2 + 3 * r: 5 + 3 * r, 2 + 3 * c: 5 + 3 * c].mean())
        assert d.x_train[7, r, c, 0] == expected
    assert d.x_train.max() > 200
    assert "8x8" in d.description and "MNIST" in d.description
    assert len(load_dataset("digits8", train_limit=5000).x_train) == 1500


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("name", [
    "foo", "", "MNIST", "../mnist", "mnist/..", "data/mnist", "mnist\\x", "mn\0ist", "..", None, 3,
])
def test_bad_names_rejected(name):
    with pytest.raises(DatasetError, match="dataset name must be one of mnist, fashion-mnist, "
                                           "digits8, got"):
        load_dataset(name)


def test_bad_name_message_shows_value():
    with pytest.raises(DatasetError, match=r"got 'foo'$"):
        load_dataset("foo")


@pytest.mark.parametrize("field", ["train_limit", "test_limit"])
@pytest.mark.parametrize("value", [0, -5, 1.5, True, False, "10", np.float64(3.0)])
def test_bad_limits_rejected(field, value):
    with pytest.raises(DatasetError, match=field) as e:
        load_dataset("digits8", **{field: value})
    assert repr(value) in str(e.value)


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


def test_dataset_validates_arrays():
    x = np.zeros((2, 8, 8, 1), np.uint8)
    y = np.zeros(2, np.int64)
    Dataset("t", x, y, x, y, ("a", "b"), "test")
    with pytest.raises(DatasetError, match="x_train"):
        Dataset("t", x.astype(np.float32), y, x, y, ("a", "b"), "test")
    with pytest.raises(DatasetError, match="y_test"):
        Dataset("t", x, y, x, y[:1], ("a", "b"), "test")


# --------------------------------------------------------------------------- listing


def test_dataset_names():
    assert dataset_names() == ("mnist", "fashion-mnist", "digits8")


def test_list_datasets_cheap_and_json(monkeypatch):
    def no_reading(*args, **kwargs):
        raise AssertionError("list_datasets must not read dataset files")

    monkeypatch.setattr(ds, "_read_bytes", no_reading)
    monkeypatch.setattr(ds.gzip, "open", no_reading)
    t = time.perf_counter()
    entries = list_datasets()
    assert time.perf_counter() - t < 0.1
    json.dumps(entries)
    assert [e["name"] for e in entries] == list(dataset_names())
    keys = {"name", "description", "available", "input_shape", "num_classes", "class_names",
            "train_size", "test_size", "mean", "std", "source"}
    for e in entries:
        assert set(e) == keys
        assert e["num_classes"] == len(e["class_names"]) == 10
        assert len(e["mean"]) == len(e["std"]) == e["input_shape"][2] == 1
    by_name = {e["name"]: e for e in entries}
    assert by_name["mnist"]["available"] is True and by_name["mnist"]["source"] == "bundled"
    assert by_name["mnist"]["input_shape"] == [28, 28, 1]
    assert (by_name["mnist"]["train_size"], by_name["mnist"]["test_size"]) == (60000, 10000)
    assert by_name["digits8"]["input_shape"] == [8, 8, 1]
    assert (by_name["digits8"]["train_size"], by_name["digits8"]["test_size"]) == (1500, 500)
