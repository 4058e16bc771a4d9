"""Which host files a machine reads, and which a migration stream may name at all
(emu/host/files.py): DESIGN.md, "Trust: who decides what". Every refusal is an OSError
(PermissionError for a grant) raised before a byte is read, and never a hang."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from emu.host.files import check_granted, read_regular

LIMIT = 1 << 20


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path):
    """A bound unix socket's path (something is listening there)."""
    path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(1)
    yield path
    s.close()


# -- read_regular ------------------------------------------------------------------------------

def test_read_regular_gives_a_regular_file_whole(tmp_path):
    path = tmp_path / "k.elf"
    data = os.urandom(5000)
    path.write_bytes(data)
    assert read_regular(str(path), LIMIT) == data
    assert read_regular(str(path), len(data)) == data  # exactly the limit is fine
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_regular(str(empty), LIMIT) == b""


@pytest.mark.timeout(10)
@pytest.mark.parametrize("device, kind", [("/dev/zero", "a character device"),
                                          ("/dev/urandom", "a character device"),
                                          ("/dev/null", "a character device")])
def test_read_regular_refuses_a_device_at_once(device, kind):
    """/dev/zero would grow without bound, /dev/urandom never end: refused unread."""
    with pytest.raises(OSError) as e:
        read_regular(device, LIMIT)
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == f"{kind}, not a regular file"


@pytest.mark.timeout(10)
def test_read_regular_refuses_a_fifo_without_waiting_for_a_writer(fifo):
    with pytest.raises(OSError) as e:
        read_regular(str(fifo), LIMIT)
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == "a FIFO, not a regular file"


@pytest.mark.timeout(10)
def test_read_regular_refuses_a_fifo_that_has_a_writer(fifo):
    """A FIFO whose writer keeps it fed is still not a file to read whole."""
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(wfd, b"x" * 4096)
        with pytest.raises(OSError, match="a FIFO, not a regular file"):
            read_regular(str(fifo), LIMIT)
    finally:
        os.close(wfd)
        os.close(rfd)


def test_read_regular_refuses_a_directory(tmp_path):
    with pytest.raises(OSError) as e:
        read_regular(str(tmp_path), LIMIT)
    assert e.value.strerror == "a directory, not a regular file"


@pytest.mark.timeout(10)
def test_read_regular_refuses_a_socket(unix_socket):
    with pytest.raises(OSError):  # a unix socket cannot even be opened (ENXIO)
        read_regular(str(unix_socket), LIMIT)


def test_read_regular_refuses_a_file_over_the_limit_before_reading_it(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as f:  # sparse: 1 GiB that costs nothing to make
        f.truncate(1 << 30)
    with pytest.raises(OSError) as e:
        read_regular(str(path), LIMIT)
    assert e.value.errno == errno.EFBIG
    assert e.value.strerror == f"{1 << 30} bytes, more than the {LIMIT} this machine can take"
    one_over = tmp_path / "one-over"
    one_over.write_bytes(bytes(LIMIT + 1))
    with pytest.raises(OSError) as e:
        read_regular(str(one_over), LIMIT)
    assert e.value.errno == errno.EFBIG


def test_read_regular_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_regular(str(tmp_path / "nosuch"), LIMIT)


@pytest.mark.timeout(10)
def test_read_regular_follows_a_symlink_to_a_device_and_refuses_it(tmp_path):
    link = tmp_path / "kernel"
    link.symlink_to("/dev/zero")
    with pytest.raises(OSError, match="a character device, not a regular file"):
        read_regular(str(link), LIMIT)


# -- check_granted -----------------------------------------------------------------------------

@pytest.fixture
def dirs(tmp_path):
    """(allowed directory with a regular file in it, a directory outside with a secret)."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "disk.img").write_bytes(b"image")
    (outside / "secret").write_bytes(b"secret")
    return allowed, outside


def refused(path: str | Path, allowed: list[str | Path], where: str = "description/x") -> str:
    with pytest.raises(PermissionError) as e:
        check_granted(str(path), where, [str(d) for d in allowed])
    assert e.value.errno == errno.EACCES
    text = e.value.strerror
    assert "\n" not in text
    assert text.startswith(f"{where}: {path} ")  # names the field and the path
    return text


def test_check_granted_accepts_a_regular_file_inside(dirs):
    allowed, _ = dirs
    assert check_granted(str(allowed / "disk.img"), "w", [str(allowed)]) is None
    # in a subdirectory, and with one of several directories allowed
    (allowed / "sub").mkdir()
    (allowed / "sub" / "k.elf").write_bytes(b"k")
    assert check_granted(str(allowed / "sub" / "k.elf"), "w",
                         ["/nonexistent", str(allowed)]) is None


def test_check_granted_accepts_a_symlink_inside_that_stays_inside(dirs):
    allowed, _ = dirs
    (allowed / "current.img").symlink_to(allowed / "disk.img")
    assert check_granted(str(allowed / "current.img"), "w", [str(allowed)]) is None


def test_check_granted_resolves_a_symlinked_allowed_directory(dirs, tmp_path):
    allowed, _ = dirs
    link = tmp_path / "vm"
    link.symlink_to(allowed)
    # the grant given through the link, the path through the real directory, and back
    assert check_granted(str(allowed / "disk.img"), "w", [str(link)]) is None
    assert check_granted(str(link / "disk.img"), "w", [str(allowed)]) is None


@pytest.mark.parametrize("path", ["disk.img", "./disk.img", "allowed/disk.img", ""])
def test_check_granted_refuses_a_relative_path(dirs, path, monkeypatch):
    allowed, _ = dirs
    monkeypatch.chdir(allowed.parent if path.startswith("allowed") else allowed)
    text = refused(path, [allowed])
    assert "is not granted here" in text and "-allow-files DIR" in text


def test_check_granted_refuses_a_file_outside(dirs):
    allowed, outside = dirs
    text = refused(outside / "secret", [allowed], "description/config/kernel")
    assert text == (f"description/config/kernel: {outside / 'secret'} is not granted here "
                    "(a stream names host files only as hints: allow its directory with "
                    "-allow-files DIR, or re-bind it with this destination's own options)")
    refused("/etc/passwd", [allowed])


def test_check_granted_refuses_everything_when_nothing_is_allowed(dirs):
    allowed, _ = dirs
    refused(allowed / "disk.img", [])


def test_check_granted_refuses_a_sibling_that_shares_the_prefix(dirs, tmp_path):
    """-allow-files /srv/vm does not grant /srv/vm2/..."""
    allowed, _ = dirs
    sibling = tmp_path / "allowed2"
    sibling.mkdir()
    (sibling / "disk.img").write_bytes(b"x")
    refused(sibling / "disk.img", [allowed])


@pytest.mark.parametrize("escape", ["../outside/secret", "sub/../../outside/secret",
                                    "../../../../../../../etc/passwd"])
def test_check_granted_refuses_dotdot_escapes(dirs, escape):
    allowed, _ = dirs
    (allowed / "sub").mkdir()
    path = f"{allowed}/{escape}"
    text = refused(path, [allowed])
    assert "is not granted here" in text


def test_check_granted_refuses_a_symlink_inside_that_leads_outside(dirs):
    allowed, outside = dirs
    (allowed / "evil.img").symlink_to(outside / "secret")
    refused(allowed / "evil.img", [allowed])
    (allowed / "etc").symlink_to("/etc")  # a directory link: every path through it
    refused(allowed / "etc" / "passwd", [allowed])
    (allowed / "hop").symlink_to(allowed / "evil.img")  # two hops
    refused(allowed / "hop", [allowed])


@pytest.mark.timeout(10)
def test_check_granted_refuses_what_is_no_regular_file_inside(dirs, unix_socket):
    allowed, _ = dirs
    os.mkfifo(allowed / "fifo")
    assert refused(allowed / "fifo", [allowed]).endswith("is a FIFO, not a regular file")
    (allowed / "dir").mkdir()
    assert refused(allowed / "dir", [allowed]).endswith("is a directory, not a regular file")
    assert refused(allowed, [allowed]).endswith("is a directory, not a regular file")
    os.rename(unix_socket, allowed / "sock")
    assert refused(allowed / "sock", [allowed]).endswith("is a socket, not a regular file")


@pytest.mark.timeout(10)
def test_check_granted_refuses_devices_even_under_an_allowed_dev(dirs):
    """-allow-files /dev by mistake still never lets /dev/zero stand in for a kernel."""
    for device in ("/dev/zero", "/dev/urandom", "/dev/null"):
        assert refused(device, ["/dev"]).endswith("is a character device, not a regular file")
    allowed, _ = dirs
    (allowed / "zero").symlink_to("/dev/zero")  # a link to a device inside an allowed dir
    text = refused(allowed / "zero", [allowed, "/dev"])
    assert text.endswith("is a character device, not a regular file")


def test_check_granted_a_missing_file_inside_names_the_field(dirs):
    allowed, _ = dirs
    with pytest.raises(FileNotFoundError) as e:
        check_granted(str(allowed / "nosuch.img"), "description/config/drives/data",
                      [str(allowed)])
    assert str(e.value.strerror) == (f"description/config/drives/data: "
                                     f"{allowed / 'nosuch.img'}: No such file or directory")


def test_a_path_that_would_break_a_message_line_is_refused(tmp_path):
    bad = tmp_path / "a\nb"
    bad.write_bytes(b"x")
    with pytest.raises(PermissionError) as e:
        check_granted(str(bad), "description/config/kernel", [str(tmp_path)])
    assert "\n" not in e.value.strerror and "unprintable" in e.value.strerror
