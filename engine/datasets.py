"""Datasets for Backprop Lab: one registry of dataset records, and their loaders.

Every dataset the program knows is one :class:`DatasetInfo` in the registry: its name,
description and licence, input shape ``(H, W, C)``, class names, train/test sizes, per-channel
mean and std, and how its files are found and loaded. Everything else (the config checks in
``engine.spec``, the model's input and output size, the server's routes, the page) reads the
record. Built in: MNIST (bundled), Fashion-MNIST (if installed) and digits8. More can be added:

* from Python: :func:`register_dataset` (any loader), :func:`register_arrays` (arrays in
  memory) or :func:`register_npz` (a ``.npz`` file);
* for a server and its workers: ``BACKPROP_DATASETS=/some/folder`` registers each
  ``<name>.npz`` in the folder(s) (``os.pathsep``-separated) when the registry is first used.

A ``.npz`` dataset holds ``x_train``/``x_test`` (uint8, ``(N, H, W)`` or ``(N, H, W, C)``),
``y_train``/``y_test`` (integers ``0 .. num_classes - 1``) and optionally ``class_names``
(strings), ``description`` (a string), ``mean`` and ``std`` (``C`` floats, pixels in [0, 1]);
it is read with ``allow_pickle=False``.

Every dataset is returned as a :class:`Dataset` holding *raw* images and labels:

* images: ``uint8`` arrays of shape ``(N, H, W, C)`` (channels-last, NHWC), values 0..255;
* labels: ``int64`` arrays of shape ``(N,)``, values ``0 .. num_classes - 1``.

Arrays are shared between loads (decompressed once per process) and are read-only;
:meth:`Dataset.batch` turns a selection of images into floats in ``[0, 1]``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import numbers
import os
import re
import threading
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "read_idx",
    "load_dataset",
    "list_datasets",
    "dataset_names",
    "dataset_info",
    "register_dataset",
    "register_arrays",
    "register_npz",
    "unregister_dataset",
]

BUNDLED_MNIST_DIR = Path(__file__).resolve().parent / "data" / "mnist"
# Where Debian's ``dataset-fashion-mnist`` package puts the four .gz files.
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

# The four IDX files of an MNIST-style dataset, by role.
_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_SUMS_FILE = "SHA256SUMS.raw"

_IDX_MAGIC = {0x00000803: "images", 0x00000801: "labels"}
_GZIP_MAGIC = b"\x1f\x8b"

_DIGITS8_TRAIN, _DIGITS8_TEST = 1500, 500
#: folders of ``<name>.npz`` datasets to register (``os.pathsep``-separated)
DATASETS_ENV = "BACKPROP_DATASETS"


class DatasetError(ValueError):
    """A dataset could not be found, read or validated; the message says which file or field."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image-classification dataset.

    ``x_train``/``x_test`` are read-only ``uint8`` arrays of shape ``(N, H, W, C)`` (NHWC, raw
    0..255); ``y_train``/``y_test`` are read-only ``int64`` arrays of shape ``(N,)``.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: tuple[str, ...]
    description: str = field(repr=False)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, "x_" + split), getattr(self, "y_" + split)
            if x.dtype != np.uint8 or x.ndim != 4 or 0 in x.shape[1:]:
                raise DatasetError(f"x_{split} must be uint8 of shape (N, H, W, C), "
                                   f"got {x.dtype} {x.shape}")
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise DatasetError(f"y_{split} must be int64 of shape ({x.shape[0]},), "
                                   f"got {y.dtype} {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(f"x_train images are {self.x_train.shape[1:]} but x_test images "
                               f"are {self.x_test.shape[1:]}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(H, W, C)``."""
        return tuple(int(n) for n in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @staticmethod
    def batch(x: np.ndarray, idx, dtype=np.float32) -> np.ndarray:
        """``x[idx]`` scaled to ``[0, 1]`` as ``dtype``: shape ``(len(idx), H, W, C)``.

        ``x`` is one of the uint8 image arrays; ``idx`` is anything NumPy can index with
        (an index array or a slice).
        """
        out = x[idx].astype(dtype)
        out *= np.asarray(1 / 255, dtype=out.dtype)
        return out


# --------------------------------------------------------------------------- IDX files


def _read_bytes(path: Path) -> bytes:
    """The decompressed content of ``path`` (gzip detected by magic bytes, not extension)."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == _GZIP_MAGIC
        if not gzipped:
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(f"{path}: gzip data is truncated or corrupt ({e}); "
                           "re-copy or re-download the file") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e.strerror or e})") from None


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4:
        raise DatasetError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DatasetError(f"{path}: not an IDX uint8 images/labels file (magic 0x{magic:08x}, "
                           "expected 0x00000803 for images or 0x00000801 for labels)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing data"
        raise DatasetError(f"{path}: IDX file {what}: header says {_IDX_MAGIC[magic]} of shape "
                           f"{dims} ({expected} bytes) but the content is {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw) of uint8 images ``(N, H, W)`` or labels ``(N,)``.

    Returns a read-only ``uint8`` array. Raises :class:`DatasetError` naming the file if it
    is missing, truncated, or not an IDX uint8 images/labels file.
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), path)


# --------------------------------------------------------------------------- folders


def _find_file(folder: Path, base: str) -> Path | None:
    for name in (base + ".gz", base, base.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Locate the four files in ``folder`` or, failing that, one of its subfolders.

    Returns ``(found, missing)`` for the best candidate folder.
    """
    def scan(d: Path):
        found = {role: p for role, base in _FILES.items() if (p := _find_file(d, base))}
        return found, [_FILES[r] for r in _FILES if r not in found]

    found, missing = scan(folder)
    if missing:
        try:
            subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            subdirs = []
        for sub in subdirs:
            sub_found, sub_missing = scan(sub)
            if not sub_missing:
                return sub_found, []
    return found, missing


def _read_sums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style file into ``{file name: hex digest}``."""
    sums = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read checksum file ({e})") from None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=16)
def _load_file(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, str]:
    """Decompress and parse one IDX file; cached per process by (resolved path, size, mtime).

    Returns ``(array, sha256 of the decompressed content)``: images as read-only uint8
    ``(N, H, W, 1)``, labels as read-only int64 ``(N,)``.
    """
    data = _read_bytes(Path(path))
    arr = _parse_idx(data, Path(path))
    if arr.ndim == 1:
        arr = arr.astype(np.int64)
        arr.flags.writeable = False
    else:
        arr = arr[..., np.newaxis]
    return arr, hashlib.sha256(data).hexdigest()


def _load_files(key: tuple[tuple[str, str, int, int], ...]) -> dict[str, tuple[np.ndarray, str]]:
    """``{role: (array, sha256)}`` for ``key`` = ((role, resolved path, size, mtime), ...)."""
    with _cache_lock:
        return {role: _load_file(path, size, mtime) for role, path, size, mtime in key}


def _load_folder(folder: Path, expected: dict[str, str] | None, sums_source: str,
                 advice: str = "re-copy or re-download it", num_classes: int = 10):
    """Load the four arrays from ``folder``, checking them against ``expected`` SHA256 sums.

    Returns ``(arrays by role, cache key)``.
    """
    found, missing = _find_files(folder)
    if missing:
        raise DatasetError(f"{folder}: missing {', '.join(missing)} (.gz or uncompressed)")
    key = []
    for role, p in found.items():
        st = p.stat()
        key.append((role, str(p.resolve()), st.st_size, st.st_mtime_ns))
    key = tuple(key)
    loaded = _load_files(key)
    if expected is not None:
        for role, (_, digest) in loaded.items():
            base = _FILES[role]
            want = expected.get(base)
            if want is not None and digest != want:
                raise DatasetError(
                    f"{base}: SHA256 of decompressed content is {digest}, expected {want} "
                    f"({sums_source}); the file {found[role]} is corrupt or not the right "
                    f"dataset — {advice}")
    arrays = {role: arr for role, (arr, _) in loaded.items()}
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        xf, yf = found["x_" + split], found["y_" + split]
        if x.ndim != 4:
            raise DatasetError(f"{xf}: expected an images file (magic 0x00000803)")
        if y.ndim != 1:
            raise DatasetError(f"{yf}: expected a labels file (magic 0x00000801)")
        if len(x) == 0 or len(x) != len(y):
            raise DatasetError(f"{xf} has {len(x)} images but {yf} has {len(y)} labels")
        if y.max() >= num_classes:
            raise DatasetError(f"{yf}: labels must be 0..{num_classes - 1}, "
                               f"found {int(y.max())}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DatasetError(f"{folder}: train images are {arrays['x_train'].shape[1:3]} but test "
                           f"images are {arrays['x_test'].shape[1:3]}")
    return arrays, key


def _mnist_arrays(path: Path | None, verify: bool):
    """MNIST arrays from ``path`` (or the bundled copy), verified against the known sums."""
    bundled_sums = BUNDLED_MNIST_DIR / _SUMS_FILE
    if path is None:
        if verify and not bundled_sums.is_file():
            raise DatasetError(f"{bundled_sums} is missing; re-install the package")
        expected = _read_sums(bundled_sums) if verify else None
        return _load_folder(BUNDLED_MNIST_DIR, expected, f"from {bundled_sums}",
                            "re-copy it or re-install the package")
    own_sums = path / _SUMS_FILE
    if not verify:
        expected, source = None, ""
    elif own_sums.is_file():
        expected, source = _read_sums(own_sums), f"from {own_sums}"
    else:
        # Any correct copy of MNIST decompresses to exactly these bytes.
        expected, source = _read_sums(bundled_sums), "the known sums of MNIST"
    return _load_folder(path, expected, source)


def _fashion_arrays(path: Path | None, verify: bool):
    if path is None:
        for d in FASHION_MNIST_DIRS:
            if d.is_dir() and not _find_files(d)[1]:
                path = d
                break
        else:
            raise DatasetError(
                "fashion-mnist not found: looked in "
                + ", ".join(str(d) for d in FASHION_MNIST_DIRS)
                + ". Install it with `apt-get install dataset-fashion-mnist`, or pass path= "
                "a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    own_sums = path / _SUMS_FILE
    # Fashion-MNIST is only checked against a SHA256SUMS.raw shipped next to it (never MNIST's).
    expected = _read_sums(own_sums) if verify and own_sums.is_file() else None
    return _load_folder(path, expected, f"from {own_sums}")


def _downsample8(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28, 1) uint8 -> (N, 8, 8, 1) uint8: crop 2 px each side, 3x3 mean-pool, round."""
    n = len(x)
    crop = x[:, 2:26, 2:26, 0].reshape(n, 8, 3, 8, 3)
    pooled = np.rint(crop.mean(axis=(2, 4)))
    out = pooled.astype(np.uint8)[..., np.newaxis]
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=4)
def _digits8_arrays(mnist_key: tuple) -> dict[str, np.ndarray]:
    """digits8 made from the (already loaded and verified) MNIST files named by ``mnist_key``."""
    mnist = {role: arr for role, (arr, _) in _load_files(mnist_key).items()}
    return {
        "x_train": _downsample8(mnist["x_train"][:_DIGITS8_TRAIN]),
        "y_train": mnist["y_train"][:_DIGITS8_TRAIN],
        "x_test": _downsample8(mnist["x_test"][:_DIGITS8_TEST]),
        "y_test": mnist["y_test"][:_DIGITS8_TEST],
    }


# --------------------------------------------------------------------------- npz files


_NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_OPTIONAL = ("class_names", "description", "mean", "std")


def _npz_fail(path, msg: str) -> DatasetError:
    return DatasetError(f"{path}: {msg}")


@functools.lru_cache(maxsize=4)
def _load_npz(path: str, size: int, mtime_ns: int) -> dict[str, object]:
    """Read and check a ``.npz`` dataset; cached per process by (resolved path, size, mtime).

    Returns the four arrays (read-only; images ``(N, H, W, C)`` uint8, labels int64) and the
    optional entries: ``class_names`` (tuple of str), ``description`` (str), ``mean``/``std``
    (tuples of C floats) or None.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            unknown = [k for k in files if k not in _NPZ_ARRAYS + _NPZ_OPTIONAL]
            if unknown:
                raise _npz_fail(path, f"unknown array {unknown[0]!r} (allowed: "
                                      f"{', '.join(_NPZ_ARRAYS + _NPZ_OPTIONAL)})")
            missing = [k for k in _NPZ_ARRAYS if k not in files]
            if missing:
                raise _npz_fail(path, f"missing array {missing[0]!r} (a dataset needs "
                                      f"{', '.join(_NPZ_ARRAYS)})")
            raw = {k: data[k] for k in files}
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        # allow_pickle=False makes an object array a ValueError: nothing in the file runs
        raise _npz_fail(path, f"cannot read as a .npz of plain arrays ({e})") from None
    out: dict[str, object] = {}
    for split in ("train", "test"):
        x, y = raw["x_" + split], raw["y_" + split]
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) == 0 or 0 in x.shape:
            raise _npz_fail(path, f"x_{split} must be non-empty uint8 images (N, H, W) or "
                                  f"(N, H, W, C), got {x.dtype} {x.shape}")
        if x.ndim == 3:
            x = x[..., np.newaxis]
        if y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise _npz_fail(path, f"y_{split} must be {len(x)} integer labels (shape "
                                  f"({len(x)},)), got {y.dtype} {y.shape}")
        if y.min() < 0:
            raise _npz_fail(path, f"y_{split}: labels must be 0 or more, found {int(y.min())}")
        x = np.ascontiguousarray(x)
        y = y.astype(np.int64)
        x.flags.writeable = False
        y.flags.writeable = False
        out["x_" + split], out["y_" + split] = x, y
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise _npz_fail(path, f"x_train images are {out['x_train'].shape[1:]} but x_test images "
                              f"are {out['x_test'].shape[1:]}")
    c = out["x_train"].shape[3]
    names = raw.get("class_names")
    if names is not None:
        if names.dtype.kind != "U" or names.ndim != 1:
            raise _npz_fail(path, f"class_names must be a 1-d array of strings, got {names.dtype} "
                                  f"{names.shape}")
        names = tuple(str(n) for n in names)
    out["class_names"] = names
    desc = raw.get("description")
    if desc is not None and (desc.dtype.kind != "U" or desc.ndim != 0):
        raise _npz_fail(path, "description must be one string (a 0-d string array)")
    out["description"] = None if desc is None else str(desc)
    for key in ("mean", "std"):
        v = raw.get(key)
        if v is not None:
            v = np.asarray(v).reshape(-1)
            if v.dtype.kind not in "fiu" or v.shape != (c,) or not np.isfinite(v).all():
                raise _npz_fail(path, f"{key} must be {c} finite numbers (one per channel), "
                                      f"got {v.dtype} {v.shape}")
            v = tuple(float(f) for f in v)
        out[key] = v
    return out


def _npz_contents(path: Path) -> dict[str, object]:
    try:
        st = path.stat()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e.strerror or e})") from None
    return _load_npz(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images ``(N, H, W, C)`` scaled to [0, 1]."""
    c = x.shape[3]
    s, ss, n = np.zeros(c), np.zeros(c), 0
    for i in range(0, len(x), 1024):                 # chunks: no float copy of the whole set
        chunk = x[i:i + 1024].reshape(-1, c).astype(np.float64) / 255
        s += chunk.sum(axis=0)
        ss += (chunk * chunk).sum(axis=0)
        n += len(chunk)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    return (tuple(round(float(m), 4) for m in mean),
            tuple(round(max(float(v), 1e-3), 4) for v in std))   # a constant channel: no /0


# --------------------------------------------------------------------------- the registry

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset's record: everything the rest of the program knows about it.

    ``input_shape`` is one image's ``(H, W, C)``. ``mean``/``std`` are per channel (C values)
    of the training pixels scaled to [0, 1], used by ``normalize: "standard"``.
    ``load(info, path, verify)`` returns ``{"x_train", "y_train", "x_test", "y_test"}`` (uint8
    NHWC images, int64 labels) from ``path`` (a folder) or the default location, raising
    :class:`DatasetError`; ``source()`` says cheaply where it would load from (``"bundled"``,
    a path, ``"memory"``) or None when it is not installed.
    """

    name: str
    description: str
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    load: Callable[["DatasetInfo", Path | None, bool], dict] = field(repr=False, compare=False)
    source: Callable[[], str | None] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        def bad(msg):
            raise DatasetError(f"dataset {self.name!r}: {msg}")
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise DatasetError(f"dataset name must be 1 to 64 lower-case letters, digits, '_', '.' "
                               f"or '-' (it appears in URLs), got {self.name!r}")
        shape = tuple(self.input_shape)
        if len(shape) != 3 or not all(isinstance(n, numbers.Integral) and n > 0 for n in shape):
            bad(f"input_shape must be (H, W, C) of positive integers, got {self.input_shape!r}")
        names = tuple(self.class_names)
        if len(names) < 2 or not all(isinstance(n, str) and n for n in names):
            bad("class_names must be at least 2 non-empty strings")
        for f in ("train_size", "test_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                bad(f"{f} must be a positive integer, got {v!r}")
        c = shape[2]
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != c or len(std) != c:
            bad(f"mean and std need one value per channel ({c}), got {self.mean!r}, {self.std!r}")
        if not all(np.isfinite(mean)) or not all(np.isfinite(s) and s > 0 for s in std):
            bad("mean must be finite and std finite and above 0")
        object.__setattr__(self, "input_shape", tuple(int(n) for n in shape))
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.input_shape[2]


def _mnist_source() -> str | None:
    return "bundled" if not _find_files(BUNDLED_MNIST_DIR)[1] else None


def _fashion_source() -> str | None:
    return next((str(d) for d in FASHION_MNIST_DIRS if d.is_dir() and not _find_files(d)[1]), None)


def _load_mnist(info: DatasetInfo, path: Path | None, verify: bool) -> dict:
    return _mnist_arrays(path, verify)[0]


def _load_fashion(info: DatasetInfo, path: Path | None, verify: bool) -> dict:
    return _fashion_arrays(path, verify)[0]


def _load_digits8(info: DatasetInfo, path: Path | None, verify: bool) -> dict:
    arrays, key = _mnist_arrays(path, verify)
    if arrays["x_train"].shape[1:] != (28, 28, 1):
        raise DatasetError(f"digits8 needs 28x28 MNIST images, got "
                           f"{arrays['x_train'].shape[1:3]} from {path}")
    return _digits8_arrays(key)


_DIGITS = tuple(str(d) for d in range(10))
_BUILTIN = (
    # Means and stds: of each training set's pixels in [0, 1]; one channel, so one value each.
    DatasetInfo(
        name="mnist",
        description=(
            "MNIST handwritten digits (Yann LeCun, Corinna Cortes, Christopher J.C. Burges): "
            "28x28 greyscale images of the digits 0-9; 60,000 train / 10,000 test. "
            "Licence CC BY-SA 3.0."
        ),
        input_shape=(28, 28, 1), class_names=_DIGITS, train_size=60000, test_size=10000,
        mean=(0.1307,), std=(0.3081,), load=_load_mnist, source=_mnist_source,
    ),
    DatasetInfo(
        name="fashion-mnist",
        description=(
            "Fashion-MNIST (Zalando Research): 28x28 greyscale images of clothing in 10 classes; "
            "60,000 train / 10,000 test. A harder drop-in replacement for MNIST. Licence MIT."
        ),
        input_shape=(28, 28, 1),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        train_size=60000, test_size=10000,
        mean=(0.2860,), std=(0.3530,), load=_load_fashion, source=_fashion_source,
    ),
    DatasetInfo(
        name="digits8",
        description=(
            "MNIST downsampled to 8x8 (2-pixel border cropped, then 3x3 mean-pooled): the first "
            "1,500 MNIST train and first 500 MNIST test images, small enough to train a first "
            "MLP in seconds."
        ),
        input_shape=(8, 8, 1), class_names=_DIGITS,
        train_size=_DIGITS8_TRAIN, test_size=_DIGITS8_TEST,
        mean=(0.1777,), std=(0.2826,), load=_load_digits8, source=_mnist_source,
    ),
)

_registry: dict[str, DatasetInfo] = {d.name: d for d in _BUILTIN}
_registry_lock = threading.RLock()
_env_scanned = False


def _scan_env() -> None:
    """Register the ``<name>.npz`` files of the folders in ``$BACKPROP_DATASETS``, once.

    A file that cannot be registered is skipped with a warning naming it (the other datasets
    stay usable); asking for it by name then says it is unknown.
    """
    global _env_scanned
    if _env_scanned:
        return
    with _registry_lock:
        if _env_scanned:
            return
        _env_scanned = True
        for folder in filter(None, os.environ.get(DATASETS_ENV, "").split(os.pathsep)):
            try:
                files = sorted(Path(folder).expanduser().glob("*.npz"))
            except OSError as e:
                warnings.warn(f"{DATASETS_ENV}: cannot list {folder} ({e})", stacklevel=2)
                continue
            for f in files:
                try:
                    register_npz(f)
                except DatasetError as e:
                    warnings.warn(f"{DATASETS_ENV}: {f} is not registered: {e}", stacklevel=2)


def _registered() -> dict[str, DatasetInfo]:
    _scan_env()
    return _registry


def register_dataset(info: DatasetInfo, replace: bool = False) -> DatasetInfo:
    """Add ``info`` to the registry (of this process). A name already taken raises
    :class:`DatasetError` unless ``replace``. Returns ``info``."""
    if not isinstance(info, DatasetInfo):
        raise DatasetError(f"register_dataset needs a DatasetInfo, got {type(info).__name__}")
    with _registry_lock:
        reg = _registered()
        if info.name in reg and not replace:
            raise DatasetError(f"dataset {info.name!r} is already registered "
                               "(pass replace=True to replace it)")
        reg[info.name] = info
    return info


def unregister_dataset(name: str) -> None:
    """Remove a dataset from the registry (tests use it to clean up); unknown names are ignored."""
    with _registry_lock:
        _registered().pop(name, None)


def _arrays_info(name: str, arrays: dict, load, source, class_names=None, description=None,
                 mean=None, std=None, where: str = "") -> DatasetInfo:
    x, n_classes = arrays["x_train"], 1 + int(max(arrays["y_train"].max(), arrays["y_test"].max()))
    if class_names is None:
        class_names = tuple(str(i) for i in range(max(n_classes, 2)))
    elif len(class_names) < n_classes:
        raise DatasetError(f"{where or name}: labels go up to {n_classes - 1} but there are only "
                           f"{len(class_names)} class names")
    if mean is None or std is None:
        mean, std = _channel_stats(x)
    h, w, c = x.shape[1:]
    return DatasetInfo(
        name=name, description=description or f"{name}: {h}x{w}x{c} images in "
        f"{len(class_names)} classes ({where or 'registered from Python'}).",
        input_shape=(h, w, c), class_names=tuple(class_names),
        train_size=len(x), test_size=len(arrays["x_test"]), mean=mean, std=std,
        load=load, source=source)


def register_npz(path: str | os.PathLike, name: str | None = None,
                 replace: bool = False) -> DatasetInfo:
    """Register the ``.npz`` dataset at ``path`` (see the module docstring for its arrays)
    under ``name`` (default: the file name without ``.npz``).

    The file is read once here (its shape, sizes and, unless stored, mean and std come from
    its arrays) and cached for loads. ``dataset.path`` in a config may name another folder
    holding a ``<name>.npz`` of the same shape.
    """
    path = Path(os.fspath(path)).expanduser()
    name = path.stem if name is None else name
    arrays = _npz_contents(path)

    def load(info: DatasetInfo, folder: Path | None, verify: bool) -> dict:
        f = path if folder is None else folder / (info.name + ".npz")
        if folder is not None and not f.is_file():
            raise DatasetError(f"{folder}: no {info.name}.npz in this folder")
        got = _npz_contents(f)
        if len(got["class_names"] or ()) not in (0, info.num_classes):
            raise DatasetError(f"{f}: has {len(got['class_names'])} class names, the dataset "
                               f"{info.name} has {info.num_classes}")
        return {k: got[k] for k in _NPZ_ARRAYS}

    def source() -> str | None:
        return str(path) if path.is_file() else None

    info = _arrays_info(name, arrays, load, source, arrays["class_names"], arrays["description"],
                        arrays["mean"], arrays["std"], where=str(path))
    return register_dataset(info, replace=replace)


def register_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, class_names=None, description: str | None = None,
                    mean=None, std=None, replace: bool = False) -> DatasetInfo:
    """Register a dataset held in memory (for tests and notebooks; lives in this process only).

    Images: uint8 ``(N, H, W)`` or ``(N, H, W, C)``; labels: integers from 0. ``class_names``
    defaults to "0", "1", ...; ``mean``/``std`` (per channel) default to the training set's.
    """
    arrays = {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) == 0:
            raise DatasetError(f"x_{split} must be non-empty uint8 images (N, H, W[, C]), "
                               f"got {x.dtype} {x.shape}")
        if y.dtype.kind not in "iu" or y.shape != (len(x),) or y.min() < 0:
            raise DatasetError(f"y_{split} must be {len(x)} integer labels from 0, "
                               f"got {y.dtype} {y.shape}")
        x = np.array(x[..., np.newaxis] if x.ndim == 3 else x)
        y = y.astype(np.int64)
        x.flags.writeable = False
        y.flags.writeable = False
        arrays["x_" + split], arrays["y_" + split] = x, y

    def load(info: DatasetInfo, folder: Path | None, verify: bool) -> dict:
        if folder is not None:
            raise DatasetError(f"dataset {info.name} is held in memory; it takes no path")
        return arrays

    info = _arrays_info(name, arrays, load, lambda: "memory", class_names, description,
                        mean, std)
    return register_dataset(info, replace=replace)


# --------------------------------------------------------------------------- public API


def dataset_names() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset`, in registration order."""
    return tuple(_registered())


def dataset_info(name) -> DatasetInfo:
    """The registry's record for ``name``; :class:`DatasetError` for any other value
    (including values that are not strings, such as a list from JSON)."""
    reg = _registered()
    if not isinstance(name, str) or name not in reg:
        raise DatasetError(f"dataset name must be one of {', '.join(reg)}, got {name!r}")
    return reg[name]


def _check_limit(field_name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or value <= 0):
        raise DatasetError(f"{field_name} must be a positive integer or None, got {value!r}")


def load_dataset(
    name: str = "mnist",
    path: str | os.PathLike | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    verify: bool = True,
) -> Dataset:
    """Load a registered dataset by name.

    ``path``: a folder to load from instead of the default location. For MNIST and
    Fashion-MNIST it holds the four MNIST-style files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
    optionally ``.gz``); for ``"digits8"`` it is the MNIST folder to derive it from; for a
    ``.npz`` dataset it holds ``<name>.npz``.

    ``train_limit``/``test_limit``: keep only the first n examples (clipped to the set's size).

    ``verify``: check the SHA256 of the decompressed files against ``SHA256SUMS.raw`` (the
    folder's own, else for MNIST the known sums; Fashion-MNIST without one is not checked).

    Images are read-only ``uint8`` ``(N, H, W, C)``, labels read-only ``int64`` ``(N,)``; the
    image shape and label range are checked against the dataset's record.
    Raises :class:`DatasetError` on a bad argument or a missing/corrupt file.
    """
    info = dataset_info(name)
    _check_limit("train_limit", train_limit)
    _check_limit("test_limit", test_limit)
    if path is not None:
        try:
            path = Path(os.fspath(path)).expanduser()
        except TypeError:
            raise DatasetError(f"path must be a folder path or None, got {path!r}") from None
        if "\0" in str(path) or not path.is_dir():
            raise DatasetError(f"path {str(path)!r} is not an existing folder")

    arrays = info.load(info, path, verify)
    where = f" (from {path})" if path is not None else ""
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.shape[1:] != info.input_shape:
            raise DatasetError(f"{name}: x_{split} images are {x.shape[1:]}{where}, but the "
                               f"dataset's input shape is {info.input_shape}")
        if len(y) and int(y.max()) >= info.num_classes:
            raise DatasetError(f"{name}: y_{split} labels must be 0..{info.num_classes - 1}"
                               f"{where}, found {int(y.max())}")

    # Limits larger than the set are clipped by the slices (None keeps everything).
    n_train = None if train_limit is None else int(train_limit)
    n_test = None if test_limit is None else int(test_limit)
    return Dataset(
        name=name,
        x_train=arrays["x_train"][:n_train],
        y_train=arrays["y_train"][:n_train],
        x_test=arrays["x_test"][:n_test],
        y_test=arrays["y_test"][:n_test],
        class_names=info.class_names,
        description=info.description,
    )


def list_datasets() -> list[dict]:
    """One JSON-serialisable dict per registered dataset. Cheap: only looks for the files.

    Keys: name, description, available, input_shape ``[H, W, C]``, num_classes, class_names,
    train_size, test_size, mean and std (per channel), source (``"bundled"``, the folder or
    file it would load from, ``"memory"``, or None).
    """
    out = []
    for info in _registered().values():
        source = info.source()
        out.append({
            "name": info.name,
            "description": info.description,
            "available": source is not None,
            "input_shape": list(info.input_shape),
            "num_classes": info.num_classes,
            "class_names": list(info.class_names),
            "train_size": info.train_size,
            "test_size": info.test_size,
            "mean": list(info.mean),
            "std": list(info.std),
            "source": source,
        })
    return out
