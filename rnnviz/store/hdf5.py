"""Reading an HDF5 file that may come from anyone: what is checked before a dataset is read (SECURITY.md).

An HDF5 file can name other files (external links, virtual datasets, raw data stored in external files),
ask for filters loaded as plugins, declare a shape its bytes cannot back (a sparse dataset of 2⁴⁰ rows),
or hold a chunk that inflates to gigabytes. :func:`open_hdf5` opens only a regular file, and only through
the descriptor it checked; :func:`checked_dataset` refuses each of those before anything is allocated,
and :class:`Rows` turns a read error into one clear line. h5py is imported here only, and only when used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import open_input
from rnnviz.store.arrays import check_numeric

# Filters HDF5 and h5py bring themselves: deflate (gzip), shuffle, fletcher32, szip, nbit, scaleoffset, lzf.
# Any other is a plugin, a shared library HDF5 would load from disk: refused.
BUILTIN_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset", 32000: "lzf"}
MAX_RATIO = 1100  # declared bytes per stored byte of a compressed dataset (deflate's limit is about 1,032)
MAX_CHUNK_BYTES = 64 << 20  # one chunk, decompressed whole when any row of it is read


@dataclass(frozen=True)
class H5:
    """An HDF5 file opened by :func:`open_hdf5`: the h5py file, its path (for messages) and its size."""

    file: object
    path: Path
    size: int


@contextmanager
def open_hdf5(path: str | Path) -> Iterator[H5]:
    """``path`` opened read-only as HDF5 (:func:`rnnviz.fsutil.open_input`: a regular file, read through the
    descriptor that was checked; a FIFO cannot block us). Closed on leaving."""
    import h5py

    with open_input(path, "an HDF5 file") as (raw, size):
        try:
            f = h5py.File(raw, "r")
        except (OSError, ValueError):
            raise RnnvizError(f"{path}: not an HDF5 file (or a damaged one)") from None
        with f:
            yield H5(f, Path(path), size)


def root_datasets(h5: H5) -> list[str]:
    """The names of the datasets at the root of the file (groups skipped); a link to another file is refused."""
    return [name for name in h5.file if _link(h5, name) == "dataset"]


def _link(h5: H5, name: str) -> str:
    """What ``name`` is ("dataset", "group", "other", "missing"), each step of its path checked before it is
    taken: only hard links are followed. An external link (to another file), a soft link (which could lead
    through one) or a user-defined link is refused."""
    import h5py

    parts = [p for p in name.split("/") if p]
    for i in range(len(parts)):
        step = "/" + "/".join(parts[: i + 1])
        try:
            link = h5.file.get(step, getlink=True)
        except (KeyError, OSError, RuntimeError, ValueError):
            return "missing"
        if link is None:
            return "missing"
        if not isinstance(link, h5py.HardLink):
            what = f"an external link to {link.filename}:{link.path}" if isinstance(link, h5py.ExternalLink) else \
                f"a soft link to {link.path}" if isinstance(link, h5py.SoftLink) else "a user-defined link"
            raise RnnvizError(f"{h5.path}: {step} is {what}: only datasets in this file are read, through no link "
                              "(a file must never make rnnviz read another)")
    obj = h5.file.get("/" + "/".join(parts)) if parts else None
    return "dataset" if isinstance(obj, h5py.Dataset) else "group" if isinstance(obj, h5py.Group) else \
        "missing" if obj is None else "other"


def checked_dataset(h5: H5, name: str) -> Rows:
    """The dataset ``name``, refused unless it is numbers stored in this file: no link to another file, not
    virtual, no raw data in external files, only HDF5's own filters, chunks of at most 64 MB, and as many
    bytes in the file as its shape declares (compressed: at least 1/1,100 of them). Nothing is read or
    allocated before these pass."""
    what = _link(h5, name)
    if what != "dataset":
        held = ", ".join(root_datasets(h5)[:8]) or "none"
        raise RnnvizError(f"{h5.path}: no dataset {name!r} (" + (f"it is a {what}; " if what != "missing" else "")
                          + f"datasets at its root: {held})")
    ds = h5.file[name]
    label = f"{h5.path}: dataset {name}"
    if ds.is_virtual:
        raise RnnvizError(f"{label} is a virtual dataset (its data may come from other files): rnnviz reads no "
                          "other file")
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        raise RnnvizError(f"{label} keeps its data in external files: rnnviz reads no other file")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    unknown = [code for code in filters if code not in BUILTIN_FILTERS]
    if unknown:
        raise RnnvizError(f"{label} needs filter {unknown[0]}, a plugin: only HDF5's own filters are read "
                          f"({', '.join(BUILTIN_FILTERS.values())})")
    check_numeric(ds.dtype, label)
    _check_storage(ds, label, bool(set(filters) - {2, 3}), h5.size)
    return Rows(ds, label)


def _check_storage(ds, label: str, compressed: bool, file_size: int) -> None:
    """The bytes a dataset's shape declares are in the file: all of them, or 1/``MAX_RATIO`` compressed;
    no chunk larger than ``MAX_CHUNK_BYTES``; never more stored bytes than the file has."""
    item = ds.dtype.itemsize
    declared = math.prod(ds.shape) * item
    if ds.chunks is not None and math.prod(ds.chunks) * item > MAX_CHUNK_BYTES:
        raise RnnvizError(f"{label} has chunks of {math.prod(ds.chunks) * item:,} bytes: at most "
                          f"{MAX_CHUNK_BYTES:,} are read at once")
    stored = ds.id.get_storage_size()
    offset = ds.id.get_offset()  # contiguous data: where it starts (None when chunked or never written)
    if stored > file_size or (offset is not None and offset + stored > file_size):
        raise RnnvizError(f"{label} claims {stored:,} bytes of data in a file of {file_size:,} (a damaged file)")
    least = declared if not compressed else -(-declared // MAX_RATIO)
    if stored < least:
        raise RnnvizError(f"{label} declares shape {ds.shape} ({declared:,} bytes) but the file holds "
                          f"{stored:,} bytes of it" + (" compressed" if compressed else "")
                          + ": a shape the file cannot back is refused")


class Rows:
    """A checked dataset that slices like an array (``shape``, ``dtype``, ``rows[a:b]``); a read that fails
    (a damaged file, data past its end) is one :class:`RnnvizError` naming the file, dataset and rows."""

    def __init__(self, ds, label: str):
        self.ds, self.label = ds, label
        self.shape, self.dtype = tuple(ds.shape), np.dtype(ds.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        try:
            return self.ds[rows]
        except (OSError, ValueError, RuntimeError) as e:
            a, b, _ = rows.indices(self.shape[0])
            raise RnnvizError(f"{self.label}: cannot read rows {a:,}:{b:,} ({str(e).splitlines()[0][:120]})") from None
