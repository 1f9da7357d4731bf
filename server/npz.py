"""Reading an uploaded ``.npz`` without trusting it.

Before ``np.load`` sees the bytes, every zip member is checked: a plain ``*.npy``
name, a declared size within the limit (the zip reader never inflates past a
member's declared size, so a zip bomb stops there), and an ``.npy`` header whose
dtype is numeric or text (never ``object``: no pickle) and whose declared shape
matches the bytes actually present. Only then is it loaded, with
``allow_pickle=False`` as a second lock. A float array must hold finite numbers only
(NaN weights would load, and every prediction would then be NaN).
"""
from __future__ import annotations

import io
import math
import re
import zipfile

import numpy as np

from .errors import ApiError

MEMBER = re.compile(r"^[A-Za-z0-9_.\-]{1,120}\.npy$")
MAX_MEMBERS = 1024


def _bad(msg: str, name: str | None = None) -> ApiError:
    return ApiError(422, ["body"] + ([name] if name else []), msg)


def read_npz(data: bytes, max_total: int) -> dict[str, np.ndarray]:
    """``{name: array}`` from the bytes of an ``.npz``; ApiError 422 naming the problem (and
    the array, ``loc`` [name], when one array is at fault)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise _bad("the body is not an .npz file (a zip archive of .npy arrays)") from None
    with zf:
        infos = zf.infolist()
        if not infos:
            raise _bad("the .npz file holds no arrays")
        if len(infos) > MAX_MEMBERS:
            raise _bad(f"the .npz file holds {len(infos)} members; at most {MAX_MEMBERS}")
        total = 0
        for info in infos:
            name = info.filename
            if not MEMBER.match(name) or ".." in name:
                raise _bad(f"member {name[:80]!r} is not a plain NAME.npy array name")
            if info.flag_bits & 0x1:
                raise _bad(f"member {name!r} is encrypted")
            total += info.file_size
            if info.file_size > max_total or total > max_total:
                raise _bad(f"the arrays would take {total:,} bytes once decompressed; "
                           f"the limit is {max_total:,} bytes", name[:-4])
            _check_header(zf, info, name[:-4])
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise _bad(f"the .npz file could not be read: {e}") from None
    for key, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            n = a.size - int(np.count_nonzero(np.isfinite(a)))
            raise _bad(f"array {key!r} holds {n:,} NaN or infinite value{'s' * (n != 1)}; "
                       "weights must be finite numbers", key)
    return arrays


def _check_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> None:
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            header_len = f.tell()
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, SyntaxError) as e:
        raise _bad(f"array {key!r} is not a valid .npy array: {e}", key) from None
    if dtype.hasobject or dtype.kind not in "fiuUb":
        raise _bad(f"array {key!r} has dtype {dtype}; only numeric arrays are accepted "
                   "(object arrays would need pickle)", key)
    n = math.prod(int(s) for s in shape)
    expected = n * dtype.itemsize
    if header_len + expected != info.file_size:
        raise _bad(f"array {key!r} declares shape {tuple(shape)} ({expected:,} bytes) but holds "
                   f"{max(info.file_size - header_len, 0):,} bytes", key)
