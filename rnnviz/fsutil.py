"""Atomic writes: a file or directory appears complete or not at all."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rnnviz.errors import RnnvizError
from rnnviz.stopping import deferred, settle, track

UMASK = os.umask(0)
os.umask(UMASK)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_parent(path: str | Path) -> None:
    """Create the directories above ``path``; a file in the way or a place that takes no directories
    (/proc, a read-only disk) is one clear error, before any work is done."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise RnnvizError(f"cannot create {path}: {e.filename or parent} is a file, not a directory") from None
    except OSError as e:
        raise RnnvizError(f"cannot create {path}: {e.filename or parent}: {e.strerror or e}") from None
    if not parent.is_dir():
        raise RnnvizError(f"cannot create {path}: {parent} is not a directory")


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb", durable: bool = True):
    """Open a temp file beside ``path``; on success fsync and rename it over ``path``.

    On any error (a full disk, Ctrl-C) the temp file is removed and ``path`` is untouched.
    ``durable=False`` skips the fsyncs: for a cache, a copy that a crash may tear and that is then
    found torn (by its size or checksum) and rebuilt.
    """
    path = Path(path)
    ensure_parent(path)
    _refuse_special(path)
    try:
        with deferred():  # a stop signal waits until the temp file is on the list that exit clears
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            tmp = track(tmp)
    except OSError as e:
        raise RnnvizError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise RnnvizError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    finally:
        settle(tmp)
    if durable:
        _fsync_dir(path.parent)


# --- reading files that a store or checkpoint names (see SECURITY.md, "file rules") ---

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # no link followed, no FIFO waited on

MAX_JSON_BYTES = 64 << 20  # a manifest, config or statistics file; the largest real one is ~40 MB


def member(directory: str | Path, name: str) -> Path:
    """``directory/name`` for a file that a store or checkpoint names, after checking that ``name`` is
    one plain file name (no separator, no ``..``, no NUL, not hidden) and that the file is a regular
    file, not a symlink, a FIFO or a device. Raises :class:`RnnvizError` otherwise (missing included)."""
    if not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".") \
            or any(c in name for c in "/\\\0") or len(name) > 255:
        raise RnnvizError(f"{directory}: names the file {name!r}, which is not a plain file name")
    path = Path(directory) / name
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise RnnvizError(f"{directory}: {name} is missing") from None
    except OSError as e:
        raise RnnvizError(f"{path}: cannot read it ({e.strerror or e})") from None
    if stat.S_ISLNK(mode):
        raise RnnvizError(f"{path}: is a symbolic link; the files of a store or checkpoint must be regular files")
    if not stat.S_ISREG(mode):
        raise RnnvizError(f"{path}: not a regular file (a directory, FIFO or device)")
    return path


def read_member(directory: str | Path, name: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``directory/name`` (checked as :func:`member` does, and again on the
    open file, so that a swap in between is caught), refused unread when over ``max_bytes``."""
    path = member(directory, name)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)  # no link followed, and a FIFO cannot block us
    except OSError as e:
        raise RnnvizError(f"{path}: cannot read it ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RnnvizError(f"{path}: not a regular file (a directory, FIFO or device)")
        if st.st_size > max_bytes:
            raise RnnvizError(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} this file may hold")
        return f.read(st.st_size)  # what it held when checked: a file growing meanwhile is cut there


@contextmanager
def open_input(path: str | Path, what: str, max_bytes: int | None = None):
    """A user's input file opened for binary reading: a regular file (a link to one is fine), opened
    without waiting (a FIFO cannot block us) and checked on the open descriptor, which is what is then
    read; over ``max_bytes``, refused unread. Yields ``(file, size)``; ``what`` ("an HDF5 file") is what the
    error says was expected."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise RnnvizError(f"{path}: no such file") from None
    except OSError as e:
        raise RnnvizError(f"{path}: cannot read it ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RnnvizError(f"{path}: not a regular file (a directory, FIFO or device), expected {what}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise RnnvizError(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} {what} may have here")
        yield f, st.st_size


def pread_into(fd: int, out, pos: int, short: str) -> None:
    """Fill the buffer ``out`` (a contiguous array or bytearray) from ``fd`` at byte ``pos``. A read may return
    less than asked (a signal): it goes on; a file that ends first is one :class:`RnnvizError`, ``short``."""
    view = memoryview(out).cast("B")
    while view:
        got = os.preadv(fd, [view], pos)
        if got <= 0:
            raise RnnvizError(short)
        view, pos = view[got:], pos + got


def pwrite_all(fd: int, data: memoryview, pos: int) -> int:
    """Write the bytes ``data`` to ``fd`` at byte ``pos`` (pwrite may write less than asked: signals, huge
    buffers; it goes on). Returns the position after them."""
    while data:
        done = os.pwrite(fd, data, pos)
        data, pos = data[done:], pos + done
    return pos


# --- writing inside a run or store (see SECURITY.md, "file rules"): never through a link ---


def writable_member(directory: str | Path, name: str) -> Path:
    """``directory/name`` for a file that we write inside a run or store: absent, or a regular file of its
    own. A symbolic link (even to a file inside), a directory, FIFO, device or socket is refused, so that a
    write never lands outside the directory and never blocks."""
    path = Path(directory) / name
    try:
        _refuse_unless_regular(path, os.lstat(path).st_mode)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise RnnvizError(f"{path}: cannot write it ({e.strerror or e})") from None
    return path


def _refuse_unless_regular(path: Path, mode: int) -> None:
    """The one refusal of the write side: a link (even to a file inside) or anything but a regular file."""
    if stat.S_ISLNK(mode):
        raise RnnvizError(f"{path}: is a symbolic link; rnnviz writes only regular files inside a run or store")
    if not stat.S_ISREG(mode):
        raise RnnvizError(f"{path}: not a regular file (a directory, FIFO or device); rnnviz will not write to it")


def writable_dir(directory: str | Path, name: str) -> Path:
    """``directory/name`` as a directory of its own that we write into, created when absent; a symbolic
    link (to a folder anywhere) or anything else in its place is refused."""
    path = Path(directory) / name
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)  # the run itself: where the user pointed --out
        os.mkdir(path, 0o777)
    except FileExistsError:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise RnnvizError(f"{path}: is a symbolic link; rnnviz writes only into its own folders inside a run "
                              f"or store") from None
        if not stat.S_ISDIR(mode):
            raise RnnvizError(f"{path}: not a directory; rnnviz will not write into it") from None
    except OSError as e:
        raise RnnvizError(f"cannot create {path}: {e.strerror or e}") from None
    return path


def _open_own(path: Path, flags: int) -> int:
    """A descriptor of the regular file ``path`` opened with ``flags`` without following a link or waiting
    on a FIFO; checked again on the open file, so that a swap in between is caught."""
    try:
        fd = os.open(path, flags | _NOFOLLOW, 0o666 & ~UMASK)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a link
            _refuse_unless_regular(path, stat.S_IFLNK)
        if e.errno == errno.EISDIR:  # opened for writing
            _refuse_unless_regular(path, stat.S_IFDIR)
        raise
    try:
        _refuse_unless_regular(path, os.fstat(fd).st_mode)
    except RnnvizError:
        os.close(fd)
        raise
    return fd


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` (UTF-8) to the regular file ``path`` inside a run, created when absent."""
    fd = _open_own(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(text)


def truncate_member(path: str | Path, size: int) -> None:
    """Cut the regular file ``path`` back to ``size`` bytes (never the target of a link)."""
    fd = _open_own(Path(path), os.O_WRONLY)
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


@contextmanager
def process_lock(path: str | Path, note: str | None = None, remove: bool = False):
    """Yields True when this process holds an exclusive lock on the regular file ``path`` (created if need
    be, never through a link), False when another process holds it. ``note`` (who holds it) is written into
    the file while held: :func:`lock_holder` reads it. Released on exit, and by the kernel if the process
    dies; with ``remove`` the file is deleted on exit (while still held), and a lock taken on a file that was
    deleted meanwhile counts as held by another."""
    import fcntl

    path = Path(path)
    fd = _open_own(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder deleted it as we opened it: another holds the path's new file, or will
            yield False
            return
        if note is not None:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, note.encode("utf-8"), 0)
            except OSError:  # a full disk: the lock holds without its note (the holder is then "unknown")
                pass
        try:
            yield True
        finally:
            if remove:
                path.unlink(missing_ok=True)
    finally:
        os.close(fd)


_HELD: set[str] = set()  # the locks this process holds through exclusive(): taken again, they are already ours


@contextmanager
def exclusive(lock: str | Path, busy: str, note: str):
    """Hold the lock file ``lock`` while writing a run or a store (:func:`process_lock`, its file removed when
    done; released by the kernel if the process dies, so a killed writer leaves nothing that blocks the next).
    Another process holding it is one :class:`RnnvizError`: "``busy`` by another process (what it noted): wait
    ...". ``note`` says who holds it (with this process's id). Taken again inside this process (the CLI holds a
    store's lock before it reads the text, the store's writer then takes it too), it is already held."""
    key = os.path.abspath(lock)
    if key in _HELD:
        yield
        return
    ensure_parent(lock)
    with process_lock(lock, note=f"{note}, process {os.getpid()}", remove=True) as held:
        if not held:
            raise RnnvizError(f"{busy} by another process ({lock_holder(lock) or 'unknown'}): wait for it to "
                              f"finish or stop it first")
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)


def lock_holder(path: str | Path) -> str:
    """What the holder of the lock ``path`` wrote there (empty when it wrote nothing or it cannot be read)."""
    try:
        fd = _open_own(Path(path), os.O_RDONLY)
    except (RnnvizError, OSError):
        return ""
    with os.fdopen(fd, "rb") as f:
        return f.read(4096).decode("utf-8", "replace").strip()


# --- private working folders in the system's temp directory ---

SCRATCH_LOCK = ".rnnviz-scratch.lock"  # inside each of our scratch folders: locked while its process lives
_MKDTEMP_NAME = r"[a-z0-9_]{8}"  # what tempfile.mkdtemp adds to the prefix


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private working folder ``PREFIX????????`` in the system's temp directory (``$TMPDIR``), removed
    however the block ends (an error, Ctrl-C, SIGTERM). While in use it holds :data:`SCRATCH_LOCK`, locked
    (an flock, released by the kernel when the process dies); the lock file appears only once locked. A
    folder left by a process killed with ``kill -9`` is removed by the next ``scratch_dir`` of the same
    prefix (:func:`remove_stale_scratch`)."""
    base = Path(tempfile.gettempdir())
    remove_stale_scratch(base, prefix)
    try:
        with deferred():  # a stop signal waits until the folder is on the list that exit clears
            path = track(tempfile.mkdtemp(prefix=prefix, dir=base))
    except OSError as e:
        raise RnnvizError(f"cannot create a working folder in {base}: {e.strerror or e}") from None
    try:
        with process_lock(path / f"{SCRATCH_LOCK}.new", note=f"rnnviz, process {os.getpid()}") as held:
            if not held:  # a folder just made, readable by us alone: cannot happen
                raise RnnvizError(f"{path}: cannot lock a working folder just made")
            os.rename(path / f"{SCRATCH_LOCK}.new", path / SCRATCH_LOCK)  # the marker appears already locked
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        settle(path)


def remove_stale_scratch(base: Path, prefix: str) -> list[Path]:
    """Remove the scratch folders of ``prefix`` in ``base`` whose process is gone; returns them. Only what is
    certainly ours goes: a name of exactly ``prefix`` and mkdtemp's 8 characters, a real directory (not a
    link) owned by this user, holding a regular :data:`SCRATCH_LOCK` that no live process holds locked."""
    name = re.compile(re.escape(prefix) + _MKDTEMP_NAME)
    removed = []
    try:
        entries = [e for e in os.scandir(base) if name.fullmatch(e.name)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            st, marker = os.lstat(path), os.lstat(path / SCRATCH_LOCK)
        except OSError:
            continue
        if not (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_ISREG(marker.st_mode)):
            continue
        try:
            with process_lock(path / SCRATCH_LOCK) as free:
                if free:  # its process is gone (a live one holds the lock for as long as it runs)
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        except (RnnvizError, OSError):
            continue
    return removed


def loads_json(raw: bytes, path: Path):
    """Parse JSON read from ``path``; anything that is not (bad UTF-8, deep nesting) is one clear error."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RnnvizError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise RnnvizError(f"{path}: not valid JSON (nested too deeply)") from None


def read_format_json(path: Path, fmt: str, version: int | tuple[int, ...], what: str) -> dict:
    """A JSON object that names its ``format`` and ``version`` (one, or any of a tuple) (a store manifest, a
    checkpoint config), checked. ``what`` names it in errors ("store version 3, this rnnviz reads 1, 2").
    The file must be a regular file (see :func:`member`) of at most ``MAX_JSON_BYTES``."""
    doc = loads_json(read_member(path.parent, path.name, MAX_JSON_BYTES), path)
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise RnnvizError(f"{path}: not an rnnviz {what}")
    versions = version if isinstance(version, tuple) else (version,)
    if type(doc.get("version")) is not int or doc["version"] not in versions:
        kind = what.split()[0]
        raise RnnvizError(f"{path}: {kind} version {doc.get('version')!r}, this rnnviz reads "
                          f"{', '.join(map(str, versions))}")
    return doc


def _refuse_special(path: Path) -> None:
    """An output path that is a directory, FIFO, device or socket is never replaced by a file (as root,
    ``--out /dev/null`` would otherwise replace the device)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
        raise RnnvizError(f"cannot write {path}: it is {what}, not a file (refusing to replace it)")


def describe(path: Path) -> str:
    """What is at ``path``, in a few words, for an error that refuses to replace it."""
    if path.is_symlink():
        return "a symbolic link"
    if not path.is_dir():
        return "a file" if path.is_file() else "a FIFO, device or socket"
    names = sorted(p.name for p in path.iterdir())
    if (path / "last").is_dir() or (path / "best").is_dir():
        return "a training run"
    return f"a folder of {len(names)} entr{'y' if len(names) == 1 else 'ies'}: {', '.join(names[:3])}" + (
        ", ..." if len(names) > 3 else "")


def write_json(path: str | Path, obj) -> None:
    with atomic_file(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False, ours=None):
    """Yield a fresh temp directory beside ``path``; on success it replaces ``path``.

    A replaced directory is first renamed to ``.NAME.old`` and removed after the new one is in place;
    :func:`recover_dir` puts it back if a crash fell between the two renames. ``ours(path) -> bool``: with
    ``overwrite``, replace only what it says is ours (an rnnviz store, for a recording) or an empty folder;
    anything else is refused, naming what is there, before anything is touched.
    """
    path = Path(path)
    if os.path.lexists(path) and not overwrite:
        raise RnnvizError(f"{path} already exists (use --force to replace it)")
    if ours is not None:
        check_replaceable(path, ours)
    ensure_parent(path)
    try:
        with deferred():  # a stop signal waits until the temp folder is on the list that exit clears
            tmp = track(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise RnnvizError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes 0700
        _fsync_dir(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        settle(tmp)
        if isinstance(e, OSError):
            raise RnnvizError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    old = path.parent / f".{path.name}.old"
    _discard(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    settle(tmp)
    _fsync_dir(path.parent)
    _discard(old)


def check_replaceable(path: str | Path, ours, what: str = "one of ours") -> None:
    """Refuse, naming what is there, to replace ``path`` unless it is absent, an empty folder or what
    ``ours(path)`` says is ours (an rnnviz store; a training run, ``what``): the one rule of ``--force``."""
    path = Path(path)
    if os.path.lexists(path) and not (_empty_dir(path) or ours(path)):
        raise RnnvizError(f"{path} is {describe(path)}, not {what}: --force replaces only that; remove it "
                          f"yourself or choose another place")


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _discard(d: Path) -> None:
    """Delete directory ``d`` so that a crash cannot leave it half-deleted under its own name (where
    :func:`recover_dir` would take it for a whole one): rename it to a temp name first, then delete."""
    if not d.exists():
        return
    trash = d.with_name(f"{d.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    os.replace(d, trash)
    shutil.rmtree(trash, ignore_errors=True)


def recover_dir(path: str | Path) -> None:
    """If a crash left ``.NAME.old`` but no ``NAME``, move the old directory back."""
    path = Path(path)
    old = path.parent / f".{path.name}.old"
    if not path.exists() and old.is_dir():
        os.replace(old, path)
