"""Downloading the real datasets (``pysrm data fetch``).

:func:`download` fetches one URL with resume (an interrupted download leaves
``<file>.part``; the next call asks the server for the remaining bytes with an
HTTP ``Range`` request, or starts over if the server ignores it), progress
reports and MD5 verification.  :func:`fetch` downloads, verifies and unpacks
the published files of a dataset, or -- where the source does not allow a
direct download (DVS Gesture needs a license click-through) -- explains where
and how to get them and verifies/unpacks them once they are in place.

``$PYSRM_DATA_MIRROR`` (a base URL) replaces the public sources: file ``F`` is
then fetched from ``$PYSRM_DATA_MIRROR/F`` (same checksums).
"""
from __future__ import annotations

import hashlib
import os
import socket
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass

from ._paths import default_data_dir

MIRROR_ENV = "PYSRM_DATA_MIRROR"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset to download.

    Parameters
    ----------
    filename : str
        Name of the file in the data folder.
    url : str
        Where it is downloaded from.
    md5 : str
        Its expected MD5 (32 hex digits).
    extract : bool, default False
        Unpack it (zip or tar) into the data folder after the download.
    """

    filename: str
    url: str
    md5: str
    extract: bool = False


@dataclass(frozen=True)
class Resource:
    """How to obtain one dataset.

    Parameters
    ----------
    files : tuple of RemoteFile
        Its files.
    manual : bool
        The files must be downloaded by hand (then :func:`fetch` verifies and unpacks them).
    instructions : str
        Where and how to get them by hand; ``DIR`` stands for the data folder.
    """

    files: tuple
    manual: bool
    instructions: str


_NMNIST_BASE = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
_GESTURE_BOX = "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794"

RESOURCES = {
    "nmnist": Resource(
        files=(RemoteFile("Train.zip", _NMNIST_BASE + "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
                          "20959b8e626244a1b502305a9e6e2031", extract=True),
               RemoteFile("Test.zip", _NMNIST_BASE + "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
                          "69ca8762b2fe404d9b9bad1103e97832", extract=True)),
        manual=False,
        instructions=(
            "N-MNIST (Orchard et al. 2015): https://www.garrickorchard.com/datasets/n-mnist ; files Train.zip "
            "(md5 20959b8e626244a1b502305a9e6e2031) and Test.zip (md5 69ca8762b2fe404d9b9bad1103e97832) on "
            "Mendeley Data, doi:10.17632/468j46mzdv.1.  Unzip both into DIR so that DIR/Train/<digit>/*.bin and "
            "DIR/Test/<digit>/*.bin exist.  SLAYER's NMNISTsmall layout (<id>.bs2 with train*.txt/test*.txt "
            "lists) is read as well.")),
    "dvs-gesture": Resource(
        files=(RemoteFile("DvsGesture.tar.gz", _GESTURE_BOX, "8a5c71fb11e24e5ca5b11866ca6c00a1", extract=True),),
        manual=True,
        instructions=(
            "DVS Gesture (Amir et al. 2017): https://research.ibm.com/interactive/dvsgesture/ .  The files are "
            "behind IBM's Box page (license CC BY 4.0, no direct download): open " + _GESTURE_BOX + " , download "
            "DvsGesture.tar.gz (md5 8a5c71fb11e24e5ca5b11866ca6c00a1), put it in DIR and run "
            "`pysrm data fetch dvs-gesture --to DIR` again to verify and unpack it (or unpack it yourself so that "
            "DIR/DvsGesture/trials_to_train.txt exists).")),
    "ntidigits": Resource(
        files=(RemoteFile("n-tidigits.hdf5",
                          "https://www.dropbox.com/scl/fi/1x4lxt9yyw25sc3tez8oi/n-tidigits.hdf5"
                          "?rlkey=w8gi5udvib2zqzosusa5tr3wq&dl=1",
                          "360a2d11e5429555c9197381cf6b58e0"),),
        manual=False,
        instructions=(
            "N-TIDIGITS18 (Anumula et al. 2018): "
            "https://docs.google.com/document/d/1Uxe7GsKKXcy6SlDUX4hoJVAC0-UkH-8kr5UXp0Ndi1M ; the single file "
            "n-tidigits.hdf5 (md5 360a2d11e5429555c9197381cf6b58e0) goes into DIR.  Reading it needs h5py "
            "(pip install h5py, or pip install '.[hdf5]' in a clone of pysrm).")),
}


class DownloadError(OSError):
    """A download failed (network, HTTP status or checksum)."""


class ManualDownloadRequired(RuntimeError):
    """The dataset cannot be downloaded automatically; the message says how to get it."""


def md5sum(path, chunk: int = 1 << 20) -> str:
    """MD5 of a file, read in blocks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    chunk : int, default 1 MiB
        Block size (bytes).

    Returns
    -------
    str
        32 lower-case hex digits.
    """
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _opener(url):
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def download(url: str, dest, md5: str | None = None, progress=None, chunk: int = 1 << 16,
             timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest``, resuming ``dest + '.part'`` and checking ``md5``.

    An existing ``dest`` with the right checksum is kept (nothing is downloaded).

    Parameters
    ----------
    url : str
        Source (``http(s)://`` or ``file://``; no proxy for localhost).
    dest : str or os.PathLike
        The file to write; its folder is created.
    md5 : str, optional
        Expected MD5 (hex); None skips the check.
    progress : callable, optional
        ``progress(done_bytes, total_bytes_or_None)``, called as data arrives.
    chunk : int, default 64 KiB
        Read size (bytes).
    timeout : float, default 60.0
        Socket timeout (s).

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    DownloadError
        The connection failed, an HTTP error, the transfer stopped early (run again to resume), or the
        checksum does not match (the download is removed).
    """
    dest = os.fspath(dest)
    if os.path.isfile(dest) and (md5 is None or md5sum(dest) == md5.lower()):
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    req = urllib.request.Request(url, headers={"User-Agent": "pysrm-data-fetch"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    try:
        try:
            resp = _opener(url).open(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and start:  # nothing left to fetch: the .part may be complete
                e.close()
                resp = None
            else:
                raise
        if resp is not None:
            with resp:
                status = getattr(resp, "status", 200)
                if start and status != 206:
                    start = 0  # the server ignored the Range request: start over
                length = resp.headers.get("Content-Length")
                total = start + int(length) if length is not None else None
                done = start
                with open(part, "ab" if start else "wb") as f:
                    if progress:
                        progress(done, total)
                    while True:
                        block = resp.read(chunk)
                        if not block:
                            break
                        f.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
                if total is not None and done < total:
                    raise DownloadError(f"download of {url} stopped at {done} of {total} bytes; run again to resume "
                                        f"(partial file {part})")
    except urllib.error.HTTPError as e:
        e.close()
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"download of {url} failed: {reason}; run again to resume"
                            + (f" (partial file {part})" if os.path.isfile(part) else "")) from None
    if md5 is not None:
        got = md5sum(part)
        if got != md5.lower():
            os.remove(part)
            raise DownloadError(f"checksum mismatch for {dest} downloaded from {url}: md5 {got}, expected "
                                f"{md5.lower()}; the corrupt download was removed, run again")
    os.replace(part, dest)
    return dest


def _safe_members(names, root):
    root = os.path.abspath(root)
    for n in names:
        target = os.path.abspath(os.path.join(root, n))
        if not (target == root or target.startswith(root + os.sep)):
            raise ValueError(f"refusing to extract {n!r}: it would land outside {root}")


def extract(archive, to) -> None:
    """Unpack a ``.zip`` or ``.tar(.gz)`` archive into ``to``.

    Parameters
    ----------
    archive : str or os.PathLike
        The archive.
    to : str or os.PathLike
        The folder to unpack into.

    Raises
    ------
    ValueError
        ``archive`` is neither a zip nor a tar archive, or a member's path would land outside ``to``.
    """
    archive, to = os.fspath(archive), os.fspath(to)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            _safe_members(z.namelist(), to)
            z.extractall(to)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            _safe_members(t.getnames(), to)
            if hasattr(tarfile, "data_filter"):
                t.extractall(to, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                t.extractall(to)
    else:
        raise ValueError(f"{archive}: not a zip or tar archive; cannot unpack it")


def _marker(to, rf):
    """``.<file>.extracted``: says that ``<file>`` was fetched and unpacked; it holds the file's MD5."""
    return os.path.join(to, f".{rf.filename}.extracted")


def _marker_ok(to, rf) -> bool:
    """True when ``to`` holds ``rf`` fetched and unpacked with the MD5 pysrm expects now (the marker is
    keyed by the file name *and* its checksum, so a changed source is fetched again)."""
    try:
        with open(_marker(to, rf)) as f:
            return f.read().strip() == rf.md5
    except OSError:
        return False


def fetch(name: str, to=None, progress=None, log=print, force: bool = False) -> str:
    """Download (or verify a manual download of), and unpack, dataset ``name`` into ``to``.

    A file already fetched and unpacked with the expected MD5 is skipped; ``$PYSRM_DATA_MIRROR`` replaces
    the source URLs (and the manual step) with ``<mirror>/<filename>``.

    Parameters
    ----------
    name : str
        A dataset name of :func:`~pysrm.data.load_dataset` (``'nmnist'``, ``'dvs-gesture'``,
        ``'ntidigits'``; ``'synthetic'`` has nothing to fetch).
    to : str or os.PathLike, optional
        The data folder; default ``$PYSRM_DATA_DIR/<name>`` or ``~/.pysrm/data/<name>``.
    progress : callable, optional
        ``progress(done_bytes, total_bytes_or_None)`` during downloads.
    log : callable, default print
        Receives one line per step.
    force : bool, default False
        Download and unpack again even when already done.

    Returns
    -------
    str
        The data folder (``""`` for ``'synthetic'``).

    Raises
    ------
    ManualDownloadRequired
        A file must be downloaded by hand and is missing (the message says how).
    DownloadError
        A download failed or a file's MD5 does not match (the message includes the manual instructions).
    ValueError, TypeError
        An unknown or non-string ``name``; ``ValueError`` for an archive that cannot be unpacked.
    """
    from .registry import _dataset_class

    key = _dataset_class(name).name
    if key == "synthetic":
        log("the synthetic dataset is generated by pysrm; nothing to fetch")
        return ""
    res = RESOURCES[key]
    to = os.fspath(to) if to is not None else default_data_dir(key)
    os.makedirs(to, exist_ok=True)
    mirror = os.environ.get(MIRROR_ENV)
    for rf in res.files:
        dest = os.path.join(to, rf.filename)
        if _marker_ok(to, rf) and not force and not os.path.isfile(dest + ".part"):
            log(f"{rf.filename}: already fetched and unpacked in {to}")
            continue
        if res.manual and not mirror:
            if not os.path.isfile(dest):
                raise ManualDownloadRequired(
                    f"{key} cannot be downloaded automatically; {dest} is missing.\n"
                    + res.instructions.replace("DIR", to))
            log(f"{rf.filename}: verifying md5 ...")
            got = md5sum(dest)
            if got != rf.md5:
                raise DownloadError(f"{dest}: md5 {got}, expected {rf.md5}; the file is corrupt or incomplete, "
                                    f"download it again.\n" + res.instructions.replace("DIR", to))
        else:
            url = mirror.rstrip("/") + "/" + rf.filename if mirror else rf.url
            if force and os.path.isfile(dest):
                os.remove(dest)
            log(f"{rf.filename}: downloading {url}")
            try:
                download(url, dest, rf.md5, progress=progress)
            except DownloadError as e:
                raise DownloadError(f"{e}\nTo get the data by hand: " + res.instructions.replace("DIR", to)) from None
            log(f"{rf.filename}: md5 verified ({rf.md5})")
        if rf.extract:
            log(f"{rf.filename}: unpacking into {to}")
            extract(dest, to)
        with open(_marker(to, rf), "w") as f:
            f.write(rf.md5 + "\n")
    return to


def instructions(name: str) -> str:
    """Where and how to obtain dataset ``name`` by hand.

    Parameters
    ----------
    name : str
        A dataset name of :func:`~pysrm.data.load_dataset`.

    Returns
    -------
    str
        The instructions; ``DIR`` stands for the data folder.

    Raises
    ------
    ValueError, TypeError
        An unknown or non-string ``name``.
    """
    from .registry import _dataset_class

    key = _dataset_class(name).name
    if key == "synthetic":
        return "the synthetic dataset is generated by pysrm; nothing to download"
    return RESOURCES[key].instructions


__all__ = ["RESOURCES", "RemoteFile", "Resource", "DownloadError", "ManualDownloadRequired", "download", "fetch",
           "extract", "md5sum", "instructions"]
