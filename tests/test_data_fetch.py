"""Downloads against a local HTTP server on 127.0.0.1 only (no other network)."""
import hashlib
import http.server
import importlib.util
import io
import pathlib
import socket
import sys
import tarfile
import threading
import zipfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pysrm.data.remote as fetch_mod  # noqa: E402
from pysrm.data import load_dataset  # noqa: E402
from pysrm.data.remote import DownloadError, ManualDownloadRequired, RemoteFile, Resource, download  # noqa: E402


def load_data_cmd():
    """The click group of cli/data_cmd.py (installed as pysrm_cli.data_cmd, or loaded from the file)."""
    try:
        from pysrm_cli.data_cmd import data
        return data
    except ImportError:
        spec = importlib.util.spec_from_file_location("_pysrm_cli_data_cmd", REPO / "cli" / "data_cmd.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.data


class Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    honor_range = True
    requests: list = []

    def do_GET(self):
        path = self.path.split("?")[0]
        rng = self.headers.get("Range")
        type(self).requests.append((path, rng))
        data = self.files.get(path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        if rng and self.honor_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    Handler.files, Handler.requests, Handler.honor_range = {}, [], True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def md5(b):
    return hashlib.md5(b).hexdigest()


PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))


def test_download_with_progress(server, tmp_path):
    Handler.files["/f.bin"] = PAYLOAD
    calls = []
    out = download(server + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=lambda d, t: calls.append((d, t)),
                   chunk=50_000)
    assert pathlib.Path(out).read_bytes() == PAYLOAD
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(calls) >= 6
    assert not (tmp_path / "f.bin.part").exists()
    # present and verified: no second request
    n = len(Handler.requests)
    download(server + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD))
    assert len(Handler.requests) == n


def test_download_resumes_partial(server, tmp_path):
    Handler.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:123_456])
    calls = []
    download(server + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=lambda d, t: calls.append(d))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert Handler.requests[-1] == ("/f.bin", "bytes=123456-")
    assert calls[0] == 123_456


def test_download_restarts_when_range_ignored(server, tmp_path):
    Handler.files["/f.bin"] = PAYLOAD
    Handler.honor_range = False
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 10)
    download(server + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_download_complete_part_416(server, tmp_path):
    Handler.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    download(server + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_download_checksum_mismatch(server, tmp_path):
    Handler.files["/f.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match=r"checksum mismatch .* expected 0{32}"):
        download(server + "/f.bin", tmp_path / "f.bin", "0" * 32)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_download_http_and_connection_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server + "/missing.bin", tmp_path / "m.bin")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DownloadError, match="failed"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "x.bin", timeout=5)


def _nmnist_zips():
    def bin_bytes(n, seed):
        r = np.random.default_rng(seed)
        b = np.zeros((n, 5), np.uint8)
        b[:, 0], b[:, 1], b[:, 4] = r.integers(0, 34, n), r.integers(0, 34, n), np.arange(n)
        return b.tobytes()

    out = {}
    for split in ("Train", "Test"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for c in (0, 1):
                for k in range(3):
                    z.writestr(f"{split}/{c}/{k:05d}.bin", bin_bytes(10 + k, 10 * c + k))
        out[f"{split}.zip"] = buf.getvalue()
    return out


@pytest.fixture
def mirrored_nmnist(server, monkeypatch):
    zips = _nmnist_zips()
    for name, data in zips.items():
        Handler.files["/" + name] = data
    res = fetch_mod.RESOURCES["nmnist"]
    files = tuple(RemoteFile(f.filename, "http://invalid.example/never-used", md5(zips[f.filename]), f.extract)
                  for f in res.files)
    monkeypatch.setitem(fetch_mod.RESOURCES, "nmnist", Resource(files, res.manual, res.instructions))
    monkeypatch.setenv("PYSRM_DATA_MIRROR", server)
    return zips


def test_fetch_nmnist_from_mirror(mirrored_nmnist, tmp_path):
    logs = []
    where = fetch_mod.fetch("nmnist", tmp_path / "nm", log=logs.append)
    assert (tmp_path / "nm" / "Train" / "1" / "00002.bin").is_file()
    ds = load_dataset("nmnist", "train", data_dir=where)
    assert len(ds) == 6 and ds.events(5).size == 12
    assert len(load_dataset("nmnist", "test", data_dir=where)) == 6
    n = len(Handler.requests)
    fetch_mod.fetch("nmnist", tmp_path / "nm", log=logs.append)
    assert len(Handler.requests) == n and "already fetched" in logs[-1]


def test_cli_fetch(mirrored_nmnist, tmp_path):
    from click.testing import CliRunner

    data = load_data_cmd()
    r = CliRunner().invoke(data, ["fetch", "nmnist", "--to", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert "nmnist is ready in" in r.output and "md5 verified" in r.output
    assert (tmp_path / "d" / "Test" / "0" / "00000.bin").is_file()


def test_cli_fetch_failure_prints_manual_instructions(server, monkeypatch, tmp_path):
    from click.testing import CliRunner

    monkeypatch.setenv("PYSRM_DATA_MIRROR", server + "/nothing-here")
    r = CliRunner().invoke(load_data_cmd(), ["fetch", "ntidigits", "--to", str(tmp_path)])
    assert r.exit_code == 1
    assert "HTTP 404" in r.output and "To get the data by hand" in r.output and "n-tidigits.hdf5" in r.output


def test_manual_dvs_gesture(monkeypatch, tmp_path):
    from click.testing import CliRunner

    monkeypatch.delenv("PYSRM_DATA_MIRROR", raising=False)
    r = CliRunner().invoke(load_data_cmd(), ["fetch", "dvs-gesture", "--to", str(tmp_path)])
    assert r.exit_code == 2
    assert "cannot be downloaded automatically" in r.output and "ibm.ent.box.com" in r.output
    with pytest.raises(ManualDownloadRequired, match="DvsGesture.tar.gz"):
        fetch_mod.fetch("dvs-gesture", tmp_path, log=lambda m: None)
    # once the archive is in place it is verified and unpacked
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, text in (("DvsGesture/trials_to_train.txt", b"user01_a.aedat\n"),
                           ("DvsGesture/README.txt", b"hi\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            t.addfile(info, io.BytesIO(text))
    (tmp_path / "DvsGesture.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="md5"):
        fetch_mod.fetch("dvs-gesture", tmp_path, log=lambda m: None)
    res = fetch_mod.RESOURCES["dvs-gesture"]
    f = res.files[0]
    monkeypatch.setitem(fetch_mod.RESOURCES, "dvs-gesture", Resource(
        (RemoteFile(f.filename, f.url, md5(buf.getvalue()), True),), True, res.instructions))
    fetch_mod.fetch("dvs-gesture", tmp_path, log=lambda m: None)
    assert (tmp_path / "DvsGesture" / "trials_to_train.txt").read_bytes() == b"user01_a.aedat\n"


def test_extract_rejects_escaping_paths(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", b"x")
    (tmp_path / "bad.zip").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="outside"):
        fetch_mod.extract(tmp_path / "bad.zip", tmp_path / "out")


def test_fetch_unknown_and_synthetic():
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch_mod.fetch("imagenet", "/tmp/never", log=lambda m: None)
    logs = []
    assert fetch_mod.fetch("synthetic", None, log=logs.append) == "" and "nothing to fetch" in logs[0]


def test_fetched_marker_is_keyed_by_the_checksum(mirrored_nmnist, tmp_path, monkeypatch):
    """A folder fetched from an older source (another MD5 in its marker) is fetched again, not taken as done."""
    where = tmp_path / "nm"
    fetch_mod.fetch("nmnist", where, log=lambda m: None)
    marker = where / ".Train.zip.extracted"
    assert marker.read_text().strip() == md5(mirrored_nmnist["Train.zip"])
    marker.write_text("0" * 32 + "\n")  # as if written for another version of Train.zip
    logs = []
    fetch_mod.fetch("nmnist", where, log=logs.append)
    assert any("Train.zip: unpacking" in m for m in logs)  # checked against its MD5 and unpacked again
    assert any("Test.zip: already fetched" in m for m in logs)
    assert marker.read_text().strip() == md5(mirrored_nmnist["Train.zip"])
