"""Output folders that one process owns at a time, and output paths checked before any work.

Every folder that a command writes as a whole -- a run directory (``pysrm train``,
``pysrm train --resume``, a sweep's run), a sweep directory, a report folder -- is
owned by one process while it writes: :class:`DirLock` holds an exclusive
``fcntl.flock`` on ``FOLDER/.lock`` for as long as the process writes there, with the
holder's pid, host, command and start time written into that file.  A second
process that wants to write the same folder is refused at once with
:class:`DirectoryInUse`, whose message names the holder; nothing is waited for
and nothing of the first process is touched.

A lock cannot outlive its process: the kernel releases ``flock`` locks when the
process ends, however it ends (``kill -9``, a crash, a lost terminal), so a
``.lock`` file left behind by a dead process never blocks anyone; the next
process takes the lock and writes its own details.  A folder is only refused
while a living process (or a child it started that inherited the open file)
holds the lock.  The lock file is removed when its owner releases it.

Limitation: ``flock`` is advisory and local to one kernel on some network
filesystems (old NFS clients, some FUSE filesystems); two machines writing one
run directory over such a filesystem are not stopped (docs/limitations.md).

:func:`check_output_dir` and :func:`check_output_file` find output paths that
cannot be created (a part of the path is a file, a file where a folder is
expected, no permission) before a command starts its work, with a message that
names the option and the path (:class:`OutputPathError`).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

#: name of the lock file inside an owned folder (a dot file: run directory checks ignore it)
LOCK_NAME = ".lock"


class OutputPathError(ValueError):
    """An output path that cannot be written: ``option`` and ``path`` name it, the message says why."""

    def __init__(self, option: str, path, reason: str):
        super().__init__(f"{option} {path}: {reason}")
        self.option, self.path, self.reason = option, Path(path), reason


class DirectoryInUse(RuntimeError):
    """A folder is owned by another living process (see :class:`DirLock`).

    ``path``: the folder; ``holder``: what the holder wrote into its lock file (``pid``, ``host``,
    ``command``, ``started``), empty when it had not written it yet.
    """

    def __init__(self, path, holder: dict, what: str = "run directory", hint: str = ""):
        self.path, self.holder = Path(path), dict(holder)
        super().__init__(f"{what} {path} is in use by another process: {describe_holder(holder)}. One process at "
                         f"a time may write it" + (f"; {hint}" if hint else ""))


def describe_holder(holder: dict) -> str:
    """'pid 123 on host h (started 2026-12-07 14:50:01 UTC): pysrm train --out x', for messages."""
    if not holder.get("pid"):
        return "a process that has not written its details yet (it started a moment ago)"
    text = f"pid {holder['pid']} on host {holder.get('host', '?')}"
    if holder.get("started"):
        text += f" (started {holder['started']})"
    if holder.get("command"):
        text += f": {holder['command']}"
    if holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"])):
        text += (f" -- pid {holder['pid']} is no longer running, so a process it started (which inherited the "
                 f"lock) still holds it; end that process")
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's living process
        return True
    return True


def _first_existing(path: Path) -> Path:
    """The nearest of ``path`` and its ancestors that exists (``.`` or ``/`` at worst)."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return Path(".")


def check_output_dir(path, option: str = "--out") -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is, or can be made, a folder this process may write.

    Raises :class:`OutputPathError` naming ``option`` and ``path`` when ``path`` is a file, when a
    part of it is a file (nothing can be created below a file), or when the folder that would hold
    it may not be written.  Creates nothing.
    """
    path = Path(path)
    top = _first_existing(path)
    if top == path:
        if not path.is_dir():
            raise OutputPathError(option, path, "it is a file, not a folder; expected a folder (new, or one that "
                                                "exists); choose another path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(option, path, "this user may not write in that folder; choose another path")
        return path
    if not top.is_dir():
        raise OutputPathError(option, path, f"{top} is a file, so no folder can be made below it; expected a path "
                                            f"whose existing part is made of folders")
    if not os.access(top, os.W_OK | os.X_OK):
        raise OutputPathError(option, path, f"this user may not create folders in {top}; choose another path")
    return path


def check_output_file(path, option: str = "--out") -> Path:
    """``path`` if a file may be written there: not a folder, and its folder exists or can be made
    (see :func:`check_output_dir`); else :class:`OutputPathError` naming ``option``."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(option, path, "it is a folder; expected a file path")
    parent = path.parent
    try:
        check_output_dir(parent, option)
    except OutputPathError as e:
        raise OutputPathError(option, path, e.reason.replace("it is a file", f"{parent} is a file")) from None
    return path


class DirLock:
    """Exclusive ownership of the folder ``path`` by this process (``flock`` on ``path/.lock``).

    ``what`` ('run directory', 'report folder', ...) and ``hint`` (what the user can do) go into
    the message of :class:`DirectoryInUse`.  Use :meth:`acquire` / :meth:`release`, or ``with``.
    ``created`` lists the folders that :meth:`acquire` made (deepest last), so that a command that
    fails can remove exactly those (:meth:`remove_created`) and nothing another process made.
    """

    def __init__(self, path, what: str = "run directory", option: str = "--out", hint: str = ""):
        self.path = Path(path)
        self.what, self.option, self.hint = what, option, hint
        self.created: list = []
        self._fd = None

    @property
    def file(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, create: bool = True) -> "DirLock":
        """Take the lock (making the folder and its missing parents first when ``create``).

        Raises :class:`DirectoryInUse` at once when another process holds it, :class:`OutputPathError`
        when the folder cannot be made, ``FileNotFoundError`` when it is missing and not ``create``.
        """
        if self._fd is not None:
            return self
        while True:
            if not self.path.is_dir():
                if not create:
                    raise FileNotFoundError(f"{self.what} {self.path} does not exist")
                self._make_folder()
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # the folder vanished meanwhile (its owner removed it): start again
                continue
            try:
                _flock_exclusive(fd)
            except OSError as e:
                holder = _read_holder(fd)
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise DirectoryInUse(self.path, holder, self.what, self.hint) from None
                raise
            # the previous owner may have removed the lock file (or its folder) between our open and our
            # flock: then we hold a lock on a file nobody else will look at; take the one in place instead
            try:
                same = os.stat(self.file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        argv = [os.path.basename(sys.argv[0])] + sys.argv[1:] if sys.argv else []
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(argv),
                "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return self

    def _make_folder(self):
        missing = [p for p in (self.path, *self.path.parents) if not os.path.lexists(p)]
        check_output_dir(self.path, self.option)
        for p in reversed(missing):
            try:
                p.mkdir()
                self.created.append(p)
            except FileExistsError:  # made by someone else meanwhile: not ours to remove
                pass
            except OSError as e:
                raise OutputPathError(self.option, self.path, f"cannot create {p} ({e.strerror})") from None

    def release(self) -> None:
        """Give the lock up and remove the lock file (no-op when not held)."""
        if self._fd is None:
            return
        try:
            if os.stat(self.file).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.file)  # still ours: whoever opened it meanwhile re-checks the inode and retries
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def remove_created(self) -> None:
        """Remove the folders that :meth:`acquire` made, deepest first, where they are empty (call after
        :meth:`release`, once this process's own files in them are gone)."""
        for p in reversed(self.created):
            try:
                p.rmdir()
            except OSError:  # not empty (someone else's files) or gone: leave it
                break
        self.created = []

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _flock_exclusive(fd, tries: int = 5, wait: float = 0.02):
    """``flock(LOCK_EX | LOCK_NB)``, tried a few times over ~0.1 s: a :func:`holder_of` probe holds a
    shared lock for microseconds, and must not make an owner-to-be fail."""
    for k in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if k == tries - 1 or e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            time.sleep(wait)


def _read_holder(fd) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def holder_of(path) -> dict | None:
    """What the holder of ``path``'s lock wrote, when another process holds it; ``None`` when free.

    Probes with a non-blocking ``flock`` that it releases at once; never creates a lock file.
    """
    f = Path(path) / LOCK_NAME
    try:
        fd = os.open(f, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _read_holder(fd)
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def ensure_not_in_use(path, what: str = "run directory", hint: str = "") -> None:
    """Raise :class:`DirectoryInUse` when another process owns the folder ``path``."""
    holder = holder_of(path)
    if holder is not None:
        raise DirectoryInUse(path, holder, what, hint)
