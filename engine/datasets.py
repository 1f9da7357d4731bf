"""Datasets for Backprop Lab: MNIST (bundled), Fashion-MNIST (if installed) and digits8.

Every dataset is returned as a :class:`Dataset` holding *raw* images and labels:

* images: ``uint8`` arrays of shape ``(N, H, W, 1)`` (channels-last, NHWC), values 0..255;
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
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Dataset",
    "DatasetError",
    "read_idx",
    "load_dataset",
    "list_datasets",
    "dataset_names",
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

_INFO = {
    "mnist": dict(
        description=(
            "MNIST handwritten digits (Yann LeCun, Corinna Cortes, Christopher J.C. Burges): "
            "28x28 greyscale images of the digits 0-9; 60,000 train / 10,000 test. "
            "Licence CC BY-SA 3.0."
        ),
        class_names=tuple(str(d) for d in range(10)),
        input_shape=(28, 28, 1),
        train_size=60000,
        test_size=10000,
    ),
    "fashion-mnist": dict(
        description=(
            "Fashion-MNIST (Zalando Research): 28x28 greyscale images of clothing in 10 classes; "
            "60,000 train / 10,000 test. A harder drop-in replacement for MNIST. Licence MIT."
        ),
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        input_shape=(28, 28, 1),
        train_size=60000,
        test_size=10000,
    ),
    "digits8": dict(
        description=(
            "MNIST downsampled to 8x8 (2-pixel border cropped, then 3x3 mean-pooled): the first "
            "1,500 MNIST train and first 500 MNIST test images, small enough to train a first "
            "MLP in seconds."
        ),
        class_names=tuple(str(d) for d in range(10)),
        input_shape=(8, 8, 1),
        train_size=_DIGITS8_TRAIN,
        test_size=_DIGITS8_TEST,
    ),
}


class DatasetError(ValueError):
    """A dataset could not be found, read or validated; the message says which file or field."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image-classification dataset.

    ``x_train``/``x_test`` are read-only ``uint8`` arrays of shape ``(N, H, W, 1)`` (NHWC, raw
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
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 1:
                raise DatasetError(f"x_{split} must be uint8 of shape (N, H, W, 1), "
                                   f"got {x.dtype} {x.shape}")
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise DatasetError(f"y_{split} must be int64 of shape ({x.shape[0]},), "
                                   f"got {y.dtype} {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(f"x_train images are {self.x_train.shape[1:]} but x_test images "
                               f"are {self.x_test.shape[1:]}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(H, W, 1)``."""
        return tuple(int(n) for n in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @staticmethod
    def batch(x: np.ndarray, idx, dtype=np.float32) -> np.ndarray:
        """``x[idx]`` scaled to ``[0, 1]`` as ``dtype``: shape ``(len(idx), H, W, 1)``.

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
                 advice: str = "re-copy or re-download it"):
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
        if y.max() > 9:
            raise DatasetError(f"{yf}: labels must be 0..9, found {int(y.max())}")
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


# --------------------------------------------------------------------------- public API


def dataset_names() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset`."""
    return tuple(_INFO)


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in _INFO:
        raise DatasetError(f"dataset name must be one of {', '.join(_INFO)}, got {name!r}")
    return name


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
    """Load a dataset by name.

    ``path``: a folder holding the four MNIST-style files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
    optionally ``.gz``) instead of the default location. For ``"digits8"`` it is the MNIST
    folder to derive it from.

    ``train_limit``/``test_limit``: keep only the first n examples (clipped to the set's size).

    ``verify``: check the SHA256 of the decompressed files against ``SHA256SUMS.raw`` (the
    folder's own, else for MNIST the known sums; Fashion-MNIST without one is not checked).

    Images are read-only ``uint8`` ``(N, H, W, 1)``, labels read-only ``int64`` ``(N,)``.
    Raises :class:`DatasetError` on a bad argument or a missing/corrupt file.
    """
    name = _check_name(name)
    _check_limit("train_limit", train_limit)
    _check_limit("test_limit", test_limit)
    if path is not None:
        try:
            path = Path(os.fspath(path)).expanduser()
        except TypeError:
            raise DatasetError(f"path must be a folder path or None, got {path!r}") from None
        if "\0" in str(path) or not path.is_dir():
            raise DatasetError(f"path {str(path)!r} is not an existing folder")

    if name == "fashion-mnist":
        arrays, _ = _fashion_arrays(path, verify)
    else:
        arrays, key = _mnist_arrays(path, verify)
        if name == "digits8":
            if arrays["x_train"].shape[1:] != (28, 28, 1):
                raise DatasetError(f"digits8 needs 28x28 MNIST images, got "
                                   f"{arrays['x_train'].shape[1:3]} from {path}")
            arrays = _digits8_arrays(key)

    # Limits larger than the set are clipped by the slices (None keeps everything).
    n_train = None if train_limit is None else int(train_limit)
    n_test = None if test_limit is None else int(test_limit)
    info = _INFO[name]
    return Dataset(
        name=name,
        x_train=arrays["x_train"][:n_train],
        y_train=arrays["y_train"][:n_train],
        x_test=arrays["x_test"][:n_test],
        y_test=arrays["y_test"][:n_test],
        class_names=info["class_names"],
        description=info["description"],
    )


def list_datasets() -> list[dict]:
    """One JSON-serialisable dict per known dataset. Cheap: only looks for the files.

    Keys: name, description, available, input_shape ``[H, W, 1]``, num_classes, train_size,
    test_size, source (``"bundled"``, the folder it would load from, or None).
    """
    bundled = not _find_files(BUNDLED_MNIST_DIR)[1]
    fashion = next((str(d) for d in FASHION_MNIST_DIRS
                    if d.is_dir() and not _find_files(d)[1]), None)
    sources = {"mnist": "bundled" if bundled else None,
               "fashion-mnist": fashion,
               "digits8": "bundled" if bundled else None}
    return [
        {
            "name": name,
            "description": info["description"],
            "available": sources[name] is not None,
            "input_shape": list(info["input_shape"]),
            "num_classes": len(info["class_names"]),
            "train_size": info["train_size"],
            "test_size": info["test_size"],
            "source": sources[name],
        }
        for name, info in _INFO.items()
    ]
