"""Downloads against a real HTTP server on 127.0.0.1: verification, errors, retries and resume."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lossbench.data import kodak
from lossbench.data.download import DownloadError, download, extract_tar, fetch_checkpoint, sha256_file
from lossbench.data.fastmri_files import download_url_list, parse_url_list

FAST = {"retries": 2, "backoff": 0.01, "timeout": 5.0}


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` with an ETag; honours ``Range: bytes=N-`` and ``If-Range``.

    Misbehaviours per path: ``drop_after`` closes the first response after N bytes; ``no_length``
    sends no Content-Length and closes after N bytes; ``wrong_start`` answers a Range request from
    another offset; ``trickle`` sends one byte per that many seconds.
    """

    def do_GET(self) -> None:
        server = self.server
        path = self.path.split("?", 1)[0]
        server.requests.append((path, self.headers.get("Range")))
        body = server.files.get(path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        etag = f'"{_sha(body)[:16]}"'
        start = 0
        if self.headers.get("Range") and self.headers.get("If-Range", etag) == etag:
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416, "Range Not Satisfiable")
                return
            start = server.wrong_start.pop(path, start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("ETag", etag)
        cut = server.no_length.pop(path, None)
        if cut is None:
            self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        drop = server.drop_after.pop(path, cut)
        try:
            if path in server.trickle:
                for index in range(start, len(body)):
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(server.trickle[path])
            elif drop is not None:
                self.wfile.write(body[start : start + drop])
                self.wfile.flush()
                # Closing the socket mid-body is what a dropped connection looks like to the client.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                self.wfile.write(body[start:])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should on a trickle

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.drop_after = {}, [], {}
    httpd.no_length, httpd.wrong_start, httpd.trickle = {}, {}, {}
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PAYLOAD = bytes(range(256)) * 400  # 100 KiB


def test_good_file_is_verified_and_renamed_into_place(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    dest = download(server.url + "/data.bin", tmp_path / "sub" / "data.bin", _sha(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    # A verified file already in place is kept without asking the server again.
    download(server.url + "/data.bin", dest, _sha(PAYLOAD), **FAST)
    assert len(server.requests) == 1


def test_checksum_mismatch_names_file_and_digests_and_leaves_nothing(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD[:-1] + b"X"
    expected = _sha(PAYLOAD)
    with pytest.raises(DownloadError) as error:
        download(server.url + "/data.bin", tmp_path / "data.bin", expected, **FAST)
    message = str(error.value)
    assert "\n" not in message
    assert (
        "data.bin" in message
        and f"expected SHA-256 {expected}" in message
        and f"got {_sha(server.files['/data.bin'])}" in message
    )
    assert list(tmp_path.iterdir()) == []


def test_existing_bad_file_is_reported_and_kept(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"user's own bytes")
    with pytest.raises(DownloadError, match="exists but fails this check, remove it"):
        download(server.url + "/data.bin", tmp_path / "data.bin", _sha(PAYLOAD), **FAST)
    assert (tmp_path / "data.bin").read_bytes() == b"user's own bytes"
    assert server.requests == []


def test_404_is_one_line_and_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match=r"cannot download http://127\.0\.0\.1:\d+/missing\.bin: HTTP 404") as error:
        download(server.url + "/missing.bin", tmp_path / "missing.bin", **FAST)
    assert "\n" not in str(error.value)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_is_retried_and_resumed(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.drop_after["/data.bin"] = 30_000
    dest = download(server.url + "/data.bin", tmp_path / "data.bin", _sha(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=30000-")]


def test_part_file_of_an_earlier_run_is_resumed(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.drop_after["/data.bin"] = 1000
    with pytest.raises(DownloadError, match="after 1 attempts"):
        download(server.url + "/data.bin", tmp_path / "data.bin", _sha(PAYLOAD), **{**FAST, "retries": 0})
    assert (tmp_path / "data.bin.part").stat().st_size == 1000 and (tmp_path / "data.bin.part.json").is_file()
    download(server.url + "/data.bin?Signature=new", tmp_path / "data.bin", _sha(PAYLOAD), **FAST)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests[1:] == [("/data.bin", "bytes=1000-")]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.bin"]


def _interrupted(server, tmp_path, path: str, body: bytes, after: int = 30_000) -> Path:
    """Leave ``tmp_path/data.bin.part`` (and its record) holding ``after`` bytes of ``body`` from ``path``."""
    server.files[path] = body
    server.drop_after[path] = after
    with pytest.raises(DownloadError):
        download(server.url + path, tmp_path / "data.bin", **{**FAST, "retries": 0})
    assert (tmp_path / "data.bin.part").read_bytes() == body[:after]
    return tmp_path / "data.bin"


def test_overall_deadline_stops_a_trickling_server(server, tmp_path):
    server.files["/slow.bin"] = PAYLOAD[:2000]
    server.trickle["/slow.bin"] = 0.02  # 50 bytes/s: every read arrives well within the timeout
    begin = time.monotonic()
    with pytest.raises(
        DownloadError,
        match=(
            r"cannot download http://127\.0\.0\.1:\d+/slow\.bin: not finished within the deadline of 1 s \(\d+ bytes in"
            r" slow\.bin\.part, which a rerun resumes\)"
        ),
    ) as error:
        download(server.url + "/slow.bin", tmp_path / "slow.bin", deadline=1.0, min_rate=0, **FAST)
    assert time.monotonic() - begin < 3.0
    assert "\n" not in str(error.value)
    assert not (tmp_path / "slow.bin").exists() and (tmp_path / "slow.bin.part").stat().st_size > 0


def test_minimum_rate_aborts_and_retries_a_trickling_server(server, tmp_path):
    server.files["/slow.bin"] = PAYLOAD[:2000]
    server.trickle["/slow.bin"] = 0.02
    begin = time.monotonic()
    with pytest.raises(
        DownloadError, match=r"after 2 attempts \(\d+ B/s over 0\.\d s, below the minimum of 1000 B/s\)"
    ):
        download(
            server.url + "/slow.bin", tmp_path / "slow.bin", min_rate=1000, rate_window=0.3, **{**FAST, "retries": 1}
        )
    assert time.monotonic() - begin < 3.0
    assert [header for _, header in server.requests][0] is None and server.requests[1][1].startswith("bytes=")


def test_body_without_content_length_needs_a_checksum(server, tmp_path, caplog):
    server.files["/data.bin"] = PAYLOAD
    server.no_length["/data.bin"] = 30_000  # cut off, and nothing tells the client
    with pytest.raises(
        DownloadError,
        match=(
            r"data\.bin: the server sent no Content-Length, so a cut-off transfer cannot be told from a complete one;"
            r" give its SHA-256"
        ),
    ) as error:
        download(server.url + "/data.bin", tmp_path / "data.bin", **FAST)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "data.bin").exists()
    server.no_length["/data.bin"] = 30_000
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(server.url + "/data.bin", tmp_path / "data.bin", _sha(PAYLOAD), **FAST)
    server.no_length["/data.bin"] = len(PAYLOAD)
    assert download(server.url + "/data.bin", tmp_path / "data.bin", _sha(PAYLOAD), **FAST).read_bytes() == PAYLOAD
    server.no_length["/data.bin"] = 30_000
    download(server.url + "/data.bin", tmp_path / "other.bin", allow_unverified=True, **FAST)
    assert "other.bin UNVERIFIED: the server sent no Content-Length" in caplog.text


def test_416_after_a_longer_stale_part_discards_it(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    # A part from the same URL when the file was longer: the server answers its Range with 416.
    (tmp_path / "data.bin.part").write_bytes(b"x" * (len(PAYLOAD) + 100))
    (tmp_path / "data.bin.part.json").write_text(
        json.dumps({"url": server.url + "/data.bin", "size": len(PAYLOAD) + 500})
    )
    assert download(server.url + "/data.bin", tmp_path / "data.bin", **FAST).read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", f"bytes={len(PAYLOAD) + 100}-"), ("/data.bin", None)]
    # Without a record of its source a part is never resumed at all.
    (tmp_path / "data.bin").unlink()
    (tmp_path / "data.bin.part").write_bytes(b"x" * (len(PAYLOAD) + 100))
    assert download(server.url + "/data.bin", tmp_path / "data.bin", **FAST).read_bytes() == PAYLOAD
    assert server.requests[2:] == [("/data.bin", None)]


def test_part_of_another_file_is_never_joined(server, tmp_path):
    other = bytes(reversed(PAYLOAD))
    dest = _interrupted(server, tmp_path, "/other.bin", other)
    server.files["/data.bin"] = PAYLOAD
    assert download(server.url + "/data.bin", dest, **FAST).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/data.bin", None)


def test_part_of_a_file_changed_on_the_server_is_not_joined(server, tmp_path):
    dest = _interrupted(server, tmp_path, "/data.bin", bytes(reversed(PAYLOAD)))
    server.files["/data.bin"] = PAYLOAD  # same URL and size, new content and ETag: If-Range gets it whole
    assert download(server.url + "/data.bin", dest, **FAST).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/data.bin", "bytes=30000-")


def test_206_from_the_wrong_offset_discards_the_part(server, tmp_path):
    dest = _interrupted(server, tmp_path, "/data.bin", PAYLOAD)
    server.wrong_start["/data.bin"] = 0
    assert download(server.url + "/data.bin", dest, **FAST).read_bytes() == PAYLOAD
    assert server.requests[1:] == [("/data.bin", "bytes=30000-"), ("/data.bin", None)]


def test_folder_destination_is_one_line(server, tmp_path):
    (tmp_path / "data.bin").mkdir()
    with pytest.raises(
        DownloadError,
        match=(
            r"data\.bin: is a folder or special file, expected the path of the file to download"
            r" http://127\.0\.0\.1:\d+/data\.bin to$"
        ),
    ):
        download(server.url + "/data.bin?Signature=secret", tmp_path / "data.bin", **FAST)
    assert server.requests == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError, match=r"file/data\.bin: cannot create its folder"):
        download(server.url + "/data.bin", tmp_path / "file" / "data.bin", **FAST)


def test_unreachable_server_says_where_to_put_the_file(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused, as offline.
    with pytest.raises(DownloadError, match=r"after 2 attempts .*; put it at /by/hand") as error:
        download(
            f"http://127.0.0.1:{port}/x.bin?Signature=secret",
            tmp_path / "x.bin",
            manual_hint="put it at /by/hand",
            retries=1,
            backoff=0.01,
            timeout=2,
        )
    assert "\n" not in str(error.value) and "secret" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_hash_prefix_in_the_file_name_is_verified(server, tmp_path):
    good = f"/models/alexnet-owt-{_sha(PAYLOAD)[:8]}.pth"
    server.files[good] = PAYLOAD
    assert fetch_checkpoint(server.url + good, tmp_path / "a.pth", **FAST).read_bytes() == PAYLOAD
    server.files["/models/alexnet-owt-00000000.pth"] = PAYLOAD
    with pytest.raises(DownloadError, match="checksum mismatch, expected SHA-256 00000000"):
        fetch_checkpoint(server.url + "/models/alexnet-owt-00000000.pth", tmp_path / "b.pth", **FAST)
    assert not (tmp_path / "b.pth").exists()
    with pytest.raises(DownloadError, match="carries no SHA-256 prefix"):
        fetch_checkpoint(server.url + "/models/alexnet.pth", tmp_path / "c.pth", **FAST)


def _tar_gz(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo("link")
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tar.addfile(info)
    return buffer.getvalue()


def test_extraction_refuses_members_escaping_the_target(tmp_path):
    (tmp_path / "good.tar.gz").write_bytes(_tar_gz({"singlecoil_val/a.h5": b"a"}))
    assert extract_tar(tmp_path / "good.tar.gz", tmp_path / "out") == [tmp_path / "out" / "singlecoil_val" / "a.h5"]
    (tmp_path / "evil.tar.gz").write_bytes(_tar_gz({"ok.txt": b"x", "../evil.txt": b"x"}))
    with pytest.raises(DownloadError, match=r"evil\.tar\.gz: member '\.\./evil\.txt' would be written outside"):
        extract_tar(tmp_path / "evil.tar.gz", tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists()
    (tmp_path / "link.tar.gz").write_bytes(_tar_gz({}, symlink="/etc/passwd"))
    with pytest.raises(DownloadError, match="is a link or special file"):
        extract_tar(tmp_path / "link.tar.gz", tmp_path / "out3")
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(DownloadError, match=r"broken\.tar\.gz: cannot extract"):
        extract_tar(tmp_path / "broken.tar.gz", tmp_path / "out4")


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_extraction_never_leaves_a_cut_off_member_under_its_final_name(tmp_path, mode):
    buffer = io.BytesIO()
    first, second = b"a" * 600, np.random.default_rng(0).bytes(10240)  # incompressible: a cut gzip ends inside it
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in (("vol/a.h5", first), ("vol/b.h5", second)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = buffer.getvalue()
    # Uncompressed: b.h5's data starts after two 512-byte headers and a.h5's 1024 bytes.
    (tmp_path / "cut.tar").write_bytes(whole[: 512 * 4 + 3000] if mode == "w" else whole[: len(whole) // 2])
    with pytest.raises(
        DownloadError, match=r"cut\.tar: (member 'vol/b\.h5' is cut off after \d+ of 10240 bytes|cannot extract)"
    ) as error:
        extract_tar(tmp_path / "cut.tar", tmp_path / "out")
    assert "\n" not in str(error.value)
    assert sorted(path.name for path in (tmp_path / "out" / "vol").iterdir()) == ["a.h5"]
    assert (tmp_path / "out" / "vol" / "a.h5").read_bytes() == first


def test_fastmri_url_list_downloads_verifies_and_extracts_once(server, tmp_path):
    archive = _tar_gz({"multicoil_val/file_brain_1.h5": b"volume"})
    server.files["/v2.0/brain_multicoil_val.tar.gz"] = archive
    server.files["/v2.0/knee_singlecoil_val.tar.gz"] = _tar_gz({"singlecoil_val/file1.h5": b"knee"})
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "# from the fastMRI e-mail\n"
        f'curl -C - "{server.url}/v2.0/brain_multicoil_val.tar.gz?Signature=abc&Expires=1" --output'
        f" brain_multicoil_val.tar.gz {_sha(archive)}\n"
        f"{server.url}/v2.0/knee_singlecoil_val.tar.gz\n"
    )
    assert parse_url_list(urls)[0] == (
        f"{server.url}/v2.0/brain_multicoil_val.tar.gz?Signature=abc&Expires=1",
        _sha(archive),
    )
    assert parse_url_list(urls)[1][1] is None
    out = tmp_path / "fastmri"
    files = download_url_list(urls, out, **FAST)
    assert sorted(path.relative_to(out).as_posix() for path in files) == [
        "multicoil_val/file_brain_1.h5",
        "singlecoil_val/file1.h5",
    ]
    assert (out / "multicoil_val" / "file_brain_1.h5").read_bytes() == b"volume"
    requests_made = len(server.requests)
    assert download_url_list(urls, out, **FAST) == []
    assert len(server.requests) == requests_made


def test_fastmri_url_list_checksum_mismatch_stops_before_extraction(server, tmp_path):
    server.files["/brain.tar.gz"] = _tar_gz({"multicoil_val/x.h5": b"x"})
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{server.url}/brain.tar.gz {'0' * 64}\n")
    with pytest.raises(DownloadError, match=r"brain\.tar\.gz .*checksum mismatch"):
        download_url_list(urls, tmp_path / "out", **FAST)
    assert not (tmp_path / "out" / "multicoil_val").exists() and not (tmp_path / "out" / "brain.tar.gz").exists()


def _kodak_png(path: Path, portrait: bool = False) -> bytes:
    shape = (768, 512, 3) if portrait else (512, 768, 3)
    Image.fromarray(np.random.default_rng(len(path.name)).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path.read_bytes()


@pytest.fixture
def kodak_server(server, tmp_path):
    """The server holding 24 Kodak-sized PNGs; returns their checksums (one 'unknown')."""
    source = tmp_path / "made"
    source.mkdir()
    checksums = {}
    for index, name in enumerate(kodak.KODAK_NAMES):
        data = _kodak_png(source / name, portrait=index == 3)
        server.files[f"/kodak/{name}"] = data
        checksums[name] = _sha(data)
    checksums["kodim24.png"] = None
    return checksums


def test_shipped_kodak_checksums_cover_all_24_images():
    checksums = kodak.read_checksums()
    assert set(checksums) == set(kodak.KODAK_NAMES)
    assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in checksums.values())


def test_kodak_is_downloaded_and_verified(server, kodak_server, tmp_path):
    paths = kodak.fetch_kodak(tmp_path / "kodak", server.url + "/kodak", checksums=kodak_server, **FAST)
    assert [path.name for path in paths] == list(kodak.KODAK_NAMES)
    assert all(sha256_file(path) == _sha(server.files[f"/kodak/{path.name}"]) for path in paths)


def test_kodak_from_a_folder_filled_by_hand_needs_no_network(server, kodak_server, tmp_path):
    local = tmp_path / "by_hand"
    local.mkdir()
    for name in kodak.KODAK_NAMES[:20]:
        (local / name).write_bytes(server.files[f"/kodak/{name}"])
    kodak.fetch_kodak(tmp_path / "kodak", server.url + "/kodak/", local_dir=local, checksums=kodak_server, **FAST)
    assert sorted(path for path, _ in server.requests) == [f"/kodak/{name}" for name in kodak.KODAK_NAMES[20:]]


def test_kodak_with_unknown_digest_still_rejects_a_non_kodak_image(server, kodak_server, tmp_path):
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64)).save(small)
    server.files["/kodak/kodim24.png"] = small.read_bytes()
    with pytest.raises(DownloadError, match=r"kodim24\.png .*expected a 768×512 or 512×768 RGB PNG, got PNG RGB 64×64"):
        kodak.fetch_kodak(tmp_path / "kodak", server.url + "/kodak", checksums=kodak_server, **FAST)
    assert not (tmp_path / "kodak" / "kodim24.png").exists()


def test_kodak_offline_says_where_to_put_the_images(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        DownloadError, match=r"kodim01\.png .*put them into .*by_hand and set tasks\.denoise\.data\.val_dir"
    ):
        kodak.fetch_kodak(
            tmp_path / "kodak", f"http://127.0.0.1:{port}/", local_dir=tmp_path / "by_hand", retries=0, timeout=2
        )
