"""qcow2 images: a format behind ``block.py``'s ``BlockBackend``, beside ``RawFile``.

Follows QEMU's docs/interop/qcow2.txt: "Header" (versions 2 and 3, feature bits,
compression type), "Header extensions" (backing file format, feature name table),
"Host cluster management" (refcount table and blocks, refcount_order 0..6), "Cluster
mapping" (L1/L2 tables, standard, zero and compressed cluster descriptors) and
"Snapshots" (snapshot table, extra data, the VM state after the guest disk).

Crash safety. Every metadata update is one ``pwrite`` issued in an order that leaves an
image ``qemu-img check`` accepts (at worst with leaked clusters) if the process dies
between any two of them. The ordering protects against process death (kill -9); the
page cache keeps it. ``flush()`` (fsync) makes everything durable against power loss.

- Allocation: the cluster's refcount is raised first (a new refcount block is written,
  then the refcount table entry pointing to it), then its contents are written, and
  only then the L1/L2 entry that references it. A freed cluster's refcount is lowered
  after the last entry that referenced it is gone. So a crash leaks, never corrupts.
- A guest write lands in place only when the L2 entry has QCOW_OFLAG_COPIED (refcount 1).
  Otherwise (unallocated, zero, compressed, or shared with a snapshot) a new cluster is
  filled with the old contents merged with the new bytes (copy-on-write), then the L2
  entry is switched to it, then the old cluster is released. An L2 table shared with a
  snapshot is copied the same way before it is changed.
- Growing the refcount table: the new refcount blocks and table are written at the
  first cluster no existing block describes, then the header's table pointer (one
  12-byte write), then the old table is freed. Growing L1 (the VM state lies beyond the
  disk) likewise writes the new table, then l1_size and l1_table_offset in one write.
- Snapshot create, apply and delete change refcounts and COPIED flags of many clusters
  at once, which no order of single writes can do consistently. They therefore build a
  complete new metadata set in clusters unused by the current one -- a fresh copy of
  every active L2 table with COPIED flags computed from the new refcounts, the active
  L1 table, the snapshot table, and refcounts recounted from scratch -- and switch to
  it with one 36-byte header write (l1_size .. snapshots_offset). Until that write the
  old image is intact; after it the new one is exact and the old metadata is free.

Sharing. Everything read from the image (header, L1, refcount and snapshot tables, the
L2 and refcount block caches) is trusted to stay as this process left it, which holds
while it has the image's lock. A migration's destination on shared storage opens the
image without it; ``reopen()`` reads it all again once the source has handed it over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import zstandard

from emu.host.block import ImageLockedError, RawFile, open_raw

MAGIC = b"QFI\xfb"
V2_HEADER = 72
V3_HEADER = 104
HEADER_FORMAT = ">4sIQIIQIIQQIIQ"  # the fields common to versions 2 and 3
V3_FORMAT = ">QQQII"

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_KNOWN = INCOMPAT_COMPRESSION

EXT_END = 0
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_NAMES = 0x6803F857

OFFSET_MASK = 0x00FFFFFFFFFFFE00  # host offset bits 9..55 of L1 and standard L2 entries
REFTABLE_MASK = 0xFFFFFFFFFFFFFE00
COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO = 1  # v3 standard cluster reading as zeros
L1_RESERVED = 0x7F000000000001FF  # bits 0..8 and 56..62
L2_RESERVED = 0x3F000000000001FE

# caps from QEMU (QCOW_MAX_*): anything larger is refused before it is allocated
MAX_L1_BYTES = 32 << 20
MAX_REFTABLE_BYTES = 8 << 20
MAX_SNAPSHOTS = 65536
MAX_SNAPSHOT_TABLE = 64 << 20
MAX_SNAPSHOT_EXTRA = 1024
MAX_BACKING_NAME = 1023
MAX_CHAIN = 16
MAX_SIZE = 1 << 56
L2_CACHE_BYTES = 32 << 20

COMPRESSION_ZLIB = 0
COMPRESSION_ZSTD = 1
SNAPSHOT_HEADER = ">QIHHIIQII"
SNAPSHOT_HEADER_SIZE = 40


class Qcow2Error(OSError):
    """The image is not a qcow2 image this module can use; the message names the file
    and the field at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(errno.EINVAL, f"qcow2 image {path}: {message}")


@dataclass
class Snapshot:
    """One entry of the snapshot table ("Snapshot table" in the spec)."""

    id: str
    name: str
    l1_offset: int
    l1_size: int
    date_sec: int
    date_nsec: int
    vm_clock_ns: int
    vm_state_size: int
    disk_size: int | None = None
    extra: bytes = field(default=b"", repr=False)  # raw extra data, kept on rewrites

    def encode(self) -> bytes:
        ident = self.id.encode("utf-8", "surrogateescape")
        name = self.name.encode("utf-8", "surrogateescape")
        out = struct.pack(SNAPSHOT_HEADER, self.l1_offset, self.l1_size, len(ident),
                          len(name), self.date_sec, self.date_nsec, self.vm_clock_ns,
                          min(self.vm_state_size, 0xFFFFFFFF), len(self.extra))
        out += self.extra + ident + name
        return out + bytes(-len(out) % 8)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pread_exact(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    return data + bytes(length - len(data))  # past the end of the file reads zeros


def _pwrite_all(fd: int, offset: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _lock(fd: int, path: str, readonly: bool) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if readonly else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ImageLockedError(errno.EBUSY, f"image {path} is in use by another process") \
            from None


def is_qcow2(path: str) -> bool:
    """Whether the file starts with the qcow2 magic (format probing)."""
    # O_NONBLOCK: a FIFO named as a backing file must not wait for a writer
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.pread(fd, 4, 0) == MAGIC
    finally:
        os.close(fd)


class Qcow2Image:
    """A qcow2 image opened from ``path``; offsets and lengths are guest bytes.

    ``read``/``write`` raise ValueError outside ``[0, size)`` or when read-only;
    ``Qcow2Error`` (an OSError) for a malformed image; OSError for host trouble. Like
    ``open_image``, a read-write image is locked exclusively, a read-only one shared
    (``lock=False`` skips that). The backing chain is opened read-only."""

    def __init__(self, path: str, *, readonly: bool = False, lock: bool = True,
                 _chain: tuple[tuple[int, int], ...] = ()) -> None:
        self.path = path
        self.readonly = readonly
        try:
            fd = os.open(path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_NONBLOCK |
                         os.O_CLOEXEC)
        except OSError as e:
            raise OSError(e.errno, f"cannot open image {path}: {e.strerror}") from None
        self._fd: int | None = fd
        self.backing: Qcow2Image | RawFile | None = None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"image {path} is not a regular file")
            os.set_blocking(fd, True)
            if lock:
                _lock(fd, path, readonly)
            self._chain = (*_chain, (st.st_dev, st.st_ino))
            self._parse_header(st.st_size)
            self._open_backing()
            self._clear_autoclear()
        except BaseException:
            self.close()
            raise

    def _clear_autoclear(self) -> None:
        if not self.readonly and self.version >= 3 and self._autoclear:
            # bitmaps and other autoclear extensions go stale once we write
            _pwrite_all(self._require_fd(), 88, bytes(8))
            self._autoclear = 0

    def reopen(self) -> None:
        """Read the image again: header, L1 and refcount tables, snapshot table, with
        every cache dropped, and the backing chain likewise. For a migration's
        destination on shared storage, whose source wrote the image meanwhile."""
        fd = self._require_fd()
        backing_before = (self.backing_name, self.backing_format)
        self._parse_header(os.fstat(fd).st_size)
        if self.backing is not None and \
                (self.backing_name, self.backing_format) == backing_before:
            self.backing.reopen()
        else:  # the other process rebased the image
            backing, self.backing = self.backing, None
            if backing is not None:
                backing.close()
            self._open_backing()
        self._clear_autoclear()

    def fileno(self) -> int:
        """The image file's descriptor, which carries its lock."""
        return self._require_fd()

    # -- header ------------------------------------------------------------------

    def _error(self, message: str) -> Qcow2Error:
        return Qcow2Error(self.path, message)

    def _parse_header(self, file_size: int) -> None:
        fd = self._require_fd()
        head = _pread_exact(fd, 0, V3_HEADER)
        if file_size < V2_HEADER or head[:4] != MAGIC:
            raise self._error("bad magic: not a qcow2 image")
        (_, self.version, self.backing_offset, self.backing_name_size, cluster_bits,
         self.size, crypt, l1_size, l1_offset, rt_offset, rt_clusters, nb_snapshots,
         snapshots_offset) = struct.unpack_from(HEADER_FORMAT, head)
        if self.version not in (2, 3):
            raise self._error(f"version {self.version} is not supported (2 or 3)")
        if not 9 <= cluster_bits <= 21:
            raise self._error(f"cluster_bits {cluster_bits} outside 9..21")
        self.cluster_bits = cluster_bits
        self.cluster_size = cs = 1 << cluster_bits
        self.l2_entries = cs // 8
        self._file_size = file_size
        self._parse_v3_fields(head)
        if crypt:
            raise self._error(f"crypt_method {crypt}: encrypted images are not supported")
        if self.size > MAX_SIZE:
            raise self._error(f"size {self.size:#x} exceeds {MAX_SIZE:#x}")
        self._check_l1(l1_offset, l1_size)
        self._check_table("refcount table", rt_offset, rt_clusters * cs, MAX_REFTABLE_BYTES)
        if rt_clusters == 0:
            raise self._error("refcount_table_clusters is 0")
        self._parse_extensions()
        self.l1_offset = l1_offset
        self.l1 = list(struct.unpack(f">{l1_size}Q", _pread_exact(fd, l1_offset, 8 * l1_size)))
        self.reftable_offset, self.reftable_clusters = rt_offset, rt_clusters
        self.reftable = list(struct.unpack(f">{rt_clusters * cs // 8}Q",
                                           _pread_exact(fd, rt_offset, rt_clusters * cs)))
        self.snapshots = self._read_snapshots(snapshots_offset, nb_snapshots)
        self._l2_cache: OrderedDict[int, bytearray] = OrderedDict()
        self._rb_cache: dict[int, bytearray] = {}
        self._free_hint = 0
        self._last_compressed: tuple[int, bytes] = (-1, b"")

    def _parse_v3_fields(self, head: bytes) -> None:
        self._autoclear = 0
        self.compression_type = COMPRESSION_ZLIB
        if self.version == 2:
            self.refcount_order, self.header_length = 4, V2_HEADER
            self.incompatible = 0
            self._set_refcount_geometry()
            return
        if self._file_size < V3_HEADER:
            raise self._error("file too short for a version 3 header")
        (self.incompatible, _compat, self._autoclear, self.refcount_order,
         self.header_length) = struct.unpack_from(V3_FORMAT, head, V2_HEADER)
        if not V3_HEADER <= self.header_length <= self.cluster_size:
            raise self._error(f"header_length {self.header_length} outside "
                              f"{V3_HEADER}..{self.cluster_size}")
        if self.refcount_order > 6:
            raise self._error(f"refcount_order {self.refcount_order} outside 0..6")
        self._set_refcount_geometry()
        if self.header_length > V3_HEADER:
            self.compression_type = _pread_exact(self._require_fd(), V3_HEADER, 1)[0]
        if self.compression_type not in (COMPRESSION_ZLIB, COMPRESSION_ZSTD):
            raise self._error(f"compression_type {self.compression_type} is unknown")
        if bool(self.compression_type) != bool(self.incompatible & INCOMPAT_COMPRESSION):
            raise self._error("compression_type and its incompatible feature bit disagree")

    def _set_refcount_geometry(self) -> None:
        self.refcount_bits = 1 << self.refcount_order
        self.refcount_max = (1 << self.refcount_bits) - 1
        self.refcounts_per_block = self.cluster_size * 8 // self.refcount_bits

    def _check_incompatible(self, names: dict[int, str]) -> None:
        bits = self.incompatible
        if bits & INCOMPAT_DIRTY:
            raise self._error("incompatible feature 'dirty' is set: the image was not closed "
                              "cleanly; repair it with qemu-img check -r all")
        if bits & INCOMPAT_CORRUPT:
            raise self._error("incompatible feature 'corrupt' is set: repair it with "
                              "qemu-img check -r all")
        if bits & INCOMPAT_DATA_FILE:
            raise self._error("incompatible feature 'external data file' is not supported")
        if bits & INCOMPAT_EXTL2:
            raise self._error("incompatible feature 'extended L2 entries' is not supported")
        unknown = bits & ~(INCOMPAT_KNOWN | 0x1F)
        if unknown:
            bit = (unknown & -unknown).bit_length() - 1
            label = names.get(bit, "unknown")
            raise self._error(f"incompatible feature bit {bit} ({label}) is not supported")

    def _check_table(self, what: str, offset: int, nbytes: int, cap: int) -> None:
        if nbytes > cap:
            raise self._error(f"{what} of {nbytes} bytes exceeds {cap}")
        if offset % self.cluster_size:
            raise self._error(f"{what} offset {offset:#x} is not cluster aligned")
        if nbytes and (offset == 0 or offset + nbytes > self._file_size):
            raise self._error(f"{what} at {offset:#x}+{nbytes:#x} lies past the end of the "
                              f"file ({self._file_size:#x})")

    def _check_l1(self, offset: int, entries: int) -> None:
        need = _ceil_div(self.size, self.cluster_size * self.l2_entries)
        if entries < need:
            raise self._error(f"l1_size {entries} too small for size {self.size:#x}")
        self._check_table("L1 table", offset, entries * 8, MAX_L1_BYTES)

    def _parse_extensions(self) -> None:
        """Header extensions up to the end marker, the backing name or the first
        cluster's end, whichever comes first."""
        fd, cs = self._require_fd(), self.cluster_size
        self.backing_format: str | None = None
        names: dict[int, str] = {}
        end = cs
        if self.backing_offset:
            if self.backing_name_size > MAX_BACKING_NAME or \
                    self.backing_offset + self.backing_name_size > cs:
                raise self._error(f"backing file name too long ({self.backing_name_size} "
                                  f"bytes at {self.backing_offset:#x})")
            end = self.backing_offset
        block = _pread_exact(fd, 0, cs)
        pos = self.header_length
        while pos + 8 <= end:
            kind, length = struct.unpack_from(">II", block, pos)
            if kind == EXT_END:
                break
            if pos + 8 + length > end:
                raise self._error(f"header extension {kind:#x} at {pos:#x} overruns the header")
            data = block[pos + 8:pos + 8 + length]
            if kind == EXT_BACKING_FORMAT:
                self.backing_format = data.decode("ascii", "replace")
            elif kind == EXT_FEATURE_NAMES:
                for i in range(0, length - 47, 48):
                    if data[i] == 0:  # incompatible features
                        names[data[i + 1]] = data[i + 2:i + 48].rstrip(b"\0").decode(
                            "ascii", "replace")
            pos += 8 + length + (-length % 8)
        self._check_incompatible(names)
        self.backing_name = None
        if self.backing_offset:
            raw = block[self.backing_offset:self.backing_offset + self.backing_name_size]
            self.backing_name = raw.decode("utf-8", "surrogateescape")

    # -- backing file ------------------------------------------------------------

    def _open_backing(self) -> None:
        if not self.backing_name:
            return
        if len(self._chain) > MAX_CHAIN:
            raise self._error(f"backing chain deeper than {MAX_CHAIN} images")
        path = backing_path(self.path, self.backing_name)
        try:
            st = os.stat(path)
        except OSError as e:
            raise OSError(e.errno, f"qcow2 image {self.path}: backing file {path}: "
                                   f"{e.strerror}") from None
        if (st.st_dev, st.st_ino) in self._chain:
            raise self._error(f"backing file {path} loops back into the chain")
        fmt = self.backing_format
        if fmt is None:
            fmt = "qcow2" if is_qcow2(path) else "raw"
        if fmt == "qcow2":
            self.backing = Qcow2Image(path, readonly=True, _chain=self._chain)
        elif fmt == "raw":
            self.backing = open_raw(path, readonly=True)
        else:
            raise self._error(f"backing format {fmt!r} is not supported (raw or qcow2)")

    def _read_backing(self, offset: int, length: int) -> bytes:
        """Backing bytes; past a shorter backing file's end, zeros."""
        back = self.backing
        if back is None:
            return bytes(length)
        n = max(0, min(length, back.size - offset))
        data = back.read(offset, n) if n else b""
        return data + bytes(length - n)

    # -- snapshot table ------------------------------------------------------------

    def _read_snapshots(self, offset: int, count: int) -> list[Snapshot]:
        if count > MAX_SNAPSHOTS:
            raise self._error(f"nb_snapshots {count} exceeds {MAX_SNAPSHOTS}")
        if count == 0:
            return []
        self._check_table("snapshot table", offset, SNAPSHOT_HEADER_SIZE, MAX_SNAPSHOT_TABLE)
        fd, pos, out = self._require_fd(), offset, []
        for i in range(count):
            if pos + SNAPSHOT_HEADER_SIZE > min(self._file_size, offset + MAX_SNAPSHOT_TABLE):
                raise self._error(f"snapshot table entry {i} lies past the end of the file")
            (l1_offset, l1_size, id_size, name_size, sec, nsec, clock, vm_size,
             extra_size) = struct.unpack(SNAPSHOT_HEADER, os.pread(fd, 40, pos))
            if extra_size > MAX_SNAPSHOT_EXTRA:
                raise self._error(f"snapshot {i} extra_data_size {extra_size} exceeds "
                                  f"{MAX_SNAPSHOT_EXTRA}")
            body = os.pread(fd, extra_size + id_size + name_size, pos + 40)
            if len(body) < extra_size + id_size + name_size:
                raise self._error(f"snapshot table entry {i} lies past the end of the file")
            self._check_table(f"snapshot {i} L1 table", l1_offset, l1_size * 8, MAX_L1_BYTES)
            extra = body[:extra_size]
            if extra_size >= 8:
                vm_size = struct.unpack_from(">Q", extra)[0]
            disk = struct.unpack_from(">Q", extra, 8)[0] if extra_size >= 16 else None
            out.append(Snapshot(
                id=body[extra_size:extra_size + id_size].decode("utf-8", "surrogateescape"),
                name=body[extra_size + id_size:].decode("utf-8", "surrogateescape"),
                l1_offset=l1_offset, l1_size=l1_size, date_sec=sec, date_nsec=nsec,
                vm_clock_ns=clock, vm_state_size=vm_size, disk_size=disk, extra=extra))
            pos += _ceil_div(40 + extra_size + id_size + name_size, 8) * 8
        return out

    # -- access ----------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Qcow2Image({self.path!r}, {self.size} bytes, {'ro' if self.readonly else 'rw'})"

    def __enter__(self) -> Qcow2Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _require_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"image {self.path} is closed")
        return self._fd

    def _check(self, offset: int, length: int) -> int:
        fd = self._require_fd()
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"image {self.path}: access {offset:#x}+{length:#x} beyond "
                             f"its size {self.size:#x}")
        return fd

    def read(self, offset: int, length: int) -> bytes:
        """``length`` guest bytes at ``offset``; ValueError when outside the image."""
        self._check(offset, length)
        return self._read_tree(self.l1, offset, length, with_backing=True)

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``; ValueError when outside or read-only."""
        self._check(offset, len(data))
        if self.readonly:
            raise ValueError(f"image {self.path} is read-only")
        self._write_tree(offset, memoryview(data), with_backing=True)

    def flush(self) -> None:
        """Make written data and metadata durable (fsync)."""
        if self._fd is not None and not self.readonly:
            os.fsync(self._fd)

    def close(self) -> None:
        """Flush, close the backing chain and drop the lock. Closing twice is harmless."""
        backing, self.backing = self.backing, None
        try:
            if self._fd is not None:
                self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if backing is not None:
                backing.close()

    # -- cluster mapping ---------------------------------------------------------------

    def _pieces(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(guest cluster index, offset in it, length) for each cluster the range touches."""
        end = offset + length
        while offset < end:
            index, skip = divmod(offset, self.cluster_size)
            n = min(self.cluster_size - skip, end - offset)
            yield index, skip, n
            offset += n

    def _l2_table(self, offset: int) -> bytearray:
        table = self._l2_cache.get(offset)
        if table is not None:
            self._l2_cache.move_to_end(offset)
            return table
        cs = self.cluster_size
        if offset % cs or offset + cs > self._current_file_size():
            raise self._error(f"L2 table offset {offset:#x} is unaligned or past the end "
                              "of the file")
        table = bytearray(_pread_exact(self._require_fd(), offset, cs))
        self._l2_cache[offset] = table
        while len(self._l2_cache) * cs > L2_CACHE_BYTES:
            self._l2_cache.popitem(last=False)
        return table

    def _current_file_size(self) -> int:
        self._file_size = max(self._file_size, os.fstat(self._require_fd()).st_size)
        return self._file_size

    def _l2_offset(self, l1_entry: int, l1_index: int) -> int:
        if l1_entry & L1_RESERVED:
            raise self._error(f"L1 entry {l1_index} has reserved bits set ({l1_entry:#x})")
        return l1_entry & OFFSET_MASK

    def _l2_entry(self, l1: list[int], index: int) -> int:
        l1_index, l2_index = divmod(index, self.l2_entries)
        if l1_index >= len(l1):
            return 0
        l2_offset = self._l2_offset(l1[l1_index], l1_index)
        if not l2_offset:
            return 0
        return struct.unpack_from(">Q", self._l2_table(l2_offset), 8 * l2_index)[0]

    def _is_zero(self, entry: int) -> bool:
        return self.version >= 3 and bool(entry & ZERO) and not entry & COMPRESSED

    def _host_offset(self, entry: int) -> int:
        if entry & L2_RESERVED:
            raise self._error(f"L2 entry {entry:#x} has reserved bits set")
        return entry & OFFSET_MASK

    def _read_tree(self, l1: list[int], offset: int, length: int, *,
                   with_backing: bool) -> bytes:
        out = bytearray()
        for index, skip, n in self._pieces(offset, length):
            out += self._read_piece(self._l2_entry(l1, index), index, skip, n, with_backing)
        return bytes(out)

    def _read_piece(self, entry: int, index: int, skip: int, n: int,
                    with_backing: bool) -> bytes:
        if entry & COMPRESSED:
            return self._decompress(entry)[skip:skip + n]
        if self._is_zero(entry):
            return bytes(n)
        host = self._host_offset(entry)
        if host:
            return _pread_exact(self._require_fd(), host + skip, n)
        if with_backing:
            return self._read_backing(index * self.cluster_size + skip, n)
        return bytes(n)

    def _compressed_span(self, entry: int) -> tuple[int, int]:
        """(host offset, byte count) of a compressed cluster's data."""
        shift = 62 - (self.cluster_bits - 8)
        offset = entry & ((1 << shift) - 1)
        sectors = ((entry >> shift) & ((1 << (self.cluster_bits - 8)) - 1)) + 1
        return offset, sectors * 512 - (offset & 511)

    def _decompress(self, entry: int) -> bytes:
        if self._last_compressed[0] == entry:  # partial reads of one cluster in a row
            return self._last_compressed[1]
        offset, size = self._compressed_span(entry)
        data = os.pread(self._require_fd(), size, offset)
        cs = self.cluster_size
        try:
            out = self._inflate(data)
        except (zlib.error, ValueError) as e:
            raise self._error(f"compressed cluster at {offset:#x}: {e}") from None
        if len(out) != cs:
            raise self._error(f"compressed cluster at {offset:#x} decompresses to "
                              f"{len(out)} bytes, not {cs}")
        self._last_compressed = (entry, out)
        return out

    def _inflate(self, data: bytes) -> bytes:
        """At most one cluster from QEMU's raw deflate or zstd stream (the stored length
        is rounded up to sectors, so trailing bytes are ignored)."""
        if self.compression_type == COMPRESSION_ZLIB:
            return zlib.decompressobj(-15).decompress(data, self.cluster_size)
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False)
            return reader.read(self.cluster_size)
        except zstandard.ZstdError as e:
            raise ValueError(str(e)) from None

    # -- refcounts -------------------------------------------------------------------

    def _refblock(self, table_index: int) -> tuple[int, bytearray] | None:
        if table_index >= len(self.reftable):
            return None
        offset = self.reftable[table_index] & REFTABLE_MASK
        if not offset:
            return None
        block = self._rb_cache.get(offset)
        if block is None:
            cs = self.cluster_size
            if offset + cs > self._current_file_size():
                raise self._error(f"refcount block {table_index} at {offset:#x} lies past "
                                  "the end of the file")
            block = self._rb_cache[offset] = bytearray(
                _pread_exact(self._require_fd(), offset, cs))
        return offset, block

    def _rc_get(self, block: bytearray, i: int) -> int:
        bits = self.refcount_bits
        if bits >= 8:
            n = bits // 8
            return int.from_bytes(block[i * n:(i + 1) * n], "big")
        per = 8 // bits
        return (block[i // per] >> (i % per * bits)) & self.refcount_max

    def _rc_put(self, block: bytearray, i: int, value: int) -> tuple[int, bytes]:
        """Store in the block; return (byte offset, bytes) to write to disk."""
        bits = self.refcount_bits
        if bits >= 8:
            n = bits // 8
            block[i * n:(i + 1) * n] = value.to_bytes(n, "big")
            return i * n, bytes(block[i * n:(i + 1) * n])
        per, shift = 8 // bits, i % (8 // bits) * bits
        b = i // per
        block[b] = (block[b] & ~(self.refcount_max << shift) & 0xFF) | (value << shift)
        return b, bytes(block[b:b + 1])

    def _refcount(self, cluster: int) -> int:
        table_index, i = divmod(cluster, self.refcounts_per_block)
        found = self._refblock(table_index)
        return self._rc_get(found[1], i) if found else 0

    def _set_refcount(self, cluster: int, value: int) -> None:
        if not 0 <= value <= self.refcount_max:
            raise self._error(f"refcount of cluster {cluster} would be {value}, outside "
                              f"0..{self.refcount_max} (refcount_order {self.refcount_order})")
        table_index, i = divmod(cluster, self.refcounts_per_block)
        found = self._refblock(table_index)
        if found is None:
            self._new_refblock(table_index)
            found = self._refblock(table_index)
            assert found is not None
        offset, block = found
        at, data = self._rc_put(block, i, value)
        _pwrite_all(self._require_fd(), offset + at, data)

    def _decref(self, cluster: int) -> None:
        value = self._refcount(cluster)
        if value == 0:
            raise self._error(f"refcount of cluster {cluster} is already 0")
        self._set_refcount(cluster, value - 1)
        if value == 1:
            self._free_hint = min(self._free_hint, cluster)

    def _find_free(self, n: int) -> int:
        """First run of ``n`` clusters whose refcount is 0 (leaks are never reused)."""
        c, run = self._free_hint, 0
        while run < n:
            run = run + 1 if self._refcount(c) == 0 else 0
            c += 1
        return c - n

    def _alloc(self, n: int) -> int:
        """Claim ``n`` contiguous clusters (refcount 1, written at once); byte offset."""
        while True:
            start = self._find_free(n)
            first, last = start // self.refcounts_per_block, \
                (start + n - 1) // self.refcounts_per_block
            missing = [t for t in range(first, last + 1) if self._refblock(t) is None]
            if not missing:
                break
            self._new_refblock(missing[0])  # it takes a cluster: look again
        for c in range(start, start + n):
            self._set_refcount(c, 1)
        self._free_hint = start + n
        return start * self.cluster_size

    def _new_refblock(self, table_index: int) -> None:
        """Write a refcount block for ``table_index``, then the table entry for it."""
        if table_index >= len(self.reftable):
            self._grow_reftable(table_index)
            return
        per, cs = self.refcounts_per_block, self.cluster_size
        while True:
            c = self._find_free(1)
            block = bytearray(cs)
            if c // per == table_index:  # the block describes itself
                self._rc_put(block, c % per, 1)
                break
            if self._refblock(c // per) is not None:
                self._set_refcount(c, 1)
                break
            self._new_refblock(c // per)
        fd = self._require_fd()
        _pwrite_all(fd, c * cs, block)
        self._rb_cache[c * cs] = block
        self.reftable[table_index] = c * cs
        _pwrite_all(fd, self.reftable_offset + 8 * table_index, struct.pack(">Q", c * cs))

    def _grow_reftable(self, table_index: int) -> None:
        """New blocks and a larger table where no block reaches yet, then the header."""
        per, cs = self.refcounts_per_block, self.cluster_size
        old_entries = len(self.reftable)
        start = old_entries * per  # no refcount describes these clusters: all free
        blocks = max(1, table_index - old_entries + 1)
        while True:
            clusters = max(_ceil_div((old_entries + blocks) * 8, cs), 2 * self.reftable_clusters)
            if blocks * per >= blocks + clusters:
                break
            blocks += 1
        if clusters * cs > MAX_REFTABLE_BYTES:
            raise self._error(f"refcount table would exceed {MAX_REFTABLE_BYTES} bytes")
        fd = self._require_fd()
        new_blocks = [bytearray(cs) for _ in range(blocks)]
        for c in range(blocks + clusters):
            self._rc_put(new_blocks[c // per], c % per, 1)
        table = self.reftable + [(start + j) * cs for j in range(blocks)]
        table += [0] * (clusters * cs // 8 - len(table))
        for j, block in enumerate(new_blocks):
            _pwrite_all(fd, (start + j) * cs, block)
        table_offset = (start + blocks) * cs
        _pwrite_all(fd, table_offset, struct.pack(f">{len(table)}Q", *table))
        _pwrite_all(fd, 48, struct.pack(">QI", table_offset, clusters))
        old_offset, old_clusters = self.reftable_offset, self.reftable_clusters
        self.reftable, self.reftable_offset, self.reftable_clusters = \
            table, table_offset, clusters
        for j, block in enumerate(new_blocks):
            self._rb_cache[(start + j) * cs] = block
        for c in range(old_clusters):
            self._decref(old_offset // cs + c)

    # -- writing ------------------------------------------------------------------

    def _set_l1(self, index: int, value: int) -> None:
        self.l1[index] = value
        _pwrite_all(self._require_fd(), self.l1_offset + 8 * index, struct.pack(">Q", value))

    def _set_l2(self, l2_offset: int, index: int, value: int) -> None:
        table = self._l2_table(l2_offset)
        struct.pack_into(">Q", table, 8 * index, value)
        _pwrite_all(self._require_fd(), l2_offset + 8 * index, struct.pack(">Q", value))

    def _grow_l1(self, entries: int) -> None:
        """A larger L1 table (the VM state lies beyond the disk): table, header, free."""
        if entries * 8 > MAX_L1_BYTES:
            raise self._error(f"L1 table would exceed {MAX_L1_BYTES} bytes")
        cs = self.cluster_size
        new = self.l1 + [0] * (entries - len(self.l1))
        offset = self._alloc(_ceil_div(entries * 8, cs))
        _pwrite_all(self._require_fd(), offset, struct.pack(f">{entries}Q", *new))
        _pwrite_all(self._require_fd(), 36, struct.pack(">IQ", entries, offset))
        old_offset, old_clusters = self.l1_offset, _ceil_div(len(self.l1) * 8, cs)
        self.l1, self.l1_offset = new, offset
        for c in range(old_clusters if old_offset else 0):
            self._decref(old_offset // cs + c)

    def _writable_l2(self, l1_index: int) -> int:
        """The L2 table for ``l1_index``, allocated or copied so that we own it."""
        if l1_index >= len(self.l1):
            self._grow_l1(l1_index + 1)
        entry = self.l1[l1_index]
        old = self._l2_offset(entry, l1_index)
        if old and entry & COPIED:
            return old
        content = bytes(self._l2_table(old)) if old else bytes(self.cluster_size)
        new = self._alloc(1)
        _pwrite_all(self._require_fd(), new, content)
        self._l2_cache[new] = bytearray(content)
        self._set_l1(l1_index, new | COPIED)
        if old:
            self._decref(old // self.cluster_size)
        return new

    def _release(self, entry: int) -> None:
        """Drop one reference to the host clusters an L2 entry pointed to."""
        cs = self.cluster_size
        if entry & COMPRESSED:
            offset, size = self._compressed_span(entry)
            first = (offset & ~511) // cs
            for c in range(first, ((offset & ~511) + size + (offset & 511) - 1) // cs + 1):
                self._decref(c)
        elif self._host_offset(entry):
            self._decref(self._host_offset(entry) // cs)

    def _write_tree(self, offset: int, data: memoryview, *, with_backing: bool) -> None:
        pos = 0
        for index, skip, n in self._pieces(offset, len(data)):
            self._write_piece(index, skip, data[pos:pos + n], with_backing)
            pos += n

    def _write_piece(self, index: int, skip: int, piece: memoryview,
                     with_backing: bool) -> None:
        fd, cs = self._require_fd(), self.cluster_size
        l1_index, l2_index = divmod(index, self.l2_entries)
        l2 = self._writable_l2(l1_index)
        entry = struct.unpack_from(">Q", self._l2_table(l2), 8 * l2_index)[0]
        host = 0 if entry & COMPRESSED else self._host_offset(entry)
        if host and entry & COPIED:
            if not self._is_zero(entry):
                _pwrite_all(fd, host + skip, piece)
                return
            # an allocated zero cluster we own: fill it, then drop the zero flag
            _pwrite_all(fd, host, self._merge(bytes(cs), skip, piece))
            self._set_l2(l2, l2_index, host | COPIED)
            return
        if len(piece) == cs:
            content: bytes | memoryview = piece
        else:
            old = self._read_piece(entry, index, 0, cs, with_backing)
            content = self._merge(old, skip, piece)
        new = self._alloc(1)
        _pwrite_all(fd, new, content)
        self._set_l2(l2, l2_index, new | COPIED)
        if entry & COMPRESSED or host:
            self._release(entry)

    @staticmethod
    def _merge(old: bytes, skip: int, piece: memoryview) -> bytes:
        buf = bytearray(old)
        buf[skip:skip + len(piece)] = piece
        return bytes(buf)

    # -- snapshots -----------------------------------------------------------------

    def _vm_l1_index(self) -> int:
        """First L1 entry past the guest disk: the VM state starts there."""
        return _ceil_div(self.size, self.cluster_size * self.l2_entries)

    def _find_snapshot(self, name: str) -> Snapshot:
        for sn in self.snapshots:
            if sn.name == name or sn.id == name:
                return sn
        raise ValueError(f"image {self.path}: no snapshot {name!r}")

    def _snapshot_l1(self, sn: Snapshot) -> list[int]:
        raw = _pread_exact(self._require_fd(), sn.l1_offset, 8 * sn.l1_size)
        return list(struct.unpack(f">{sn.l1_size}Q", raw))

    def create_snapshot(self, name: str, vmstate: bytes = b"", vm_clock_ns: int = 0) \
            -> Snapshot:
        """Snapshot the disk (and ``vmstate``, the machine state, if given) as ``name``."""
        self._require_writable()
        if any(sn.name == name for sn in self.snapshots):
            raise ValueError(f"image {self.path}: snapshot {name!r} exists")
        if len(self.snapshots) >= MAX_SNAPSHOTS:
            raise ValueError(f"image {self.path}: too many snapshots")
        vm_base = self._vm_l1_index() * self.cluster_size * self.l2_entries
        if vmstate:
            self._write_tree(vm_base, memoryview(vmstate), with_backing=False)
        ids = [int(sn.id) for sn in self.snapshots if sn.id.isdigit()]
        now = time.time_ns()
        sn = Snapshot(id=str(max(ids, default=0) + 1), name=name, l1_offset=self.l1_offset,
                      l1_size=len(self.l1), date_sec=now // 10**9, date_nsec=now % 10**9,
                      vm_clock_ns=vm_clock_ns, vm_state_size=len(vmstate), disk_size=self.size,
                      extra=struct.pack(">QQ", len(vmstate), self.size))
        # the snapshot keeps the current L1 table; the active image gets fresh copies
        self._commit(self._without_vmstate(self.l1), [*self.snapshots, sn])
        return sn

    def apply_snapshot(self, name: str) -> None:
        """Make the disk what it was when ``name`` was taken (``qemu-img snapshot -a``)."""
        self._require_writable()
        sn = self._find_snapshot(name)
        if sn.disk_size is not None and sn.disk_size != self.size:
            raise ValueError(f"image {self.path}: snapshot {name!r} has disk size "
                             f"{sn.disk_size}, the image {self.size}")
        l1 = self._snapshot_l1(sn)[:len(self.l1)]
        self._commit(self._without_vmstate(l1 + [0] * (len(self.l1) - len(l1))),
                     self.snapshots)

    def delete_snapshot(self, name: str) -> None:
        """Remove snapshot ``name``; clusters only it used become free."""
        self._require_writable()
        sn = self._find_snapshot(name)
        self._commit(self.l1, [s for s in self.snapshots if s is not sn])

    def read_vmstate(self, name: str) -> bytes:
        """The machine state saved with snapshot ``name`` (b"" when it has none)."""
        sn = self._find_snapshot(name)
        per_l1_entry = self.cluster_size * self.l2_entries
        base = self._vm_l1_index() * per_l1_entry
        if base + sn.vm_state_size > sn.l1_size * per_l1_entry:
            raise self._error(f"snapshot {name!r} vm_state_size {sn.vm_state_size} exceeds "
                              "what its L1 table maps")
        return self._read_tree(self._snapshot_l1(sn), base, sn.vm_state_size,
                               with_backing=False)

    def _require_writable(self) -> None:
        self._require_fd()
        if self.readonly:
            raise ValueError(f"image {self.path} is read-only")

    def _without_vmstate(self, l1: list[int]) -> list[int]:
        first = self._vm_l1_index()
        return [e if i < first else 0 for i, e in enumerate(l1)]

    def _commit(self, active_l1: list[int], snapshots: list[Snapshot]) -> None:
        """Switch to a new active L1 and snapshot table atomically (module docstring)."""
        used: Counter[int] = Counter({0: 1})
        for sn in snapshots:
            self._count_tree(used, sn.l1_offset, self._snapshot_l1(sn))
        for l1_entry in active_l1:
            if l1_entry & OFFSET_MASK:
                self._count_l2(used, l1_entry & OFFSET_MASK)
        txn = _Allocator(self, used)
        new_l2 = {i: txn.take(1) for i, e in enumerate(active_l1) if e & OFFSET_MASK}
        l1_clusters = _ceil_div(len(active_l1) * 8, self.cluster_size)
        l1_offset = txn.take(l1_clusters) if l1_clusters else 0
        table = b"".join(sn.encode() for sn in snapshots)
        table_clusters = _ceil_div(len(table), self.cluster_size)
        snap_offset = txn.take(table_clusters) if table else 0
        rt_offset, rt_clusters, refblocks = txn.refcount_structures()
        if max(used.values()) > self.refcount_max:
            raise ValueError(f"image {self.path}: refcount_order {self.refcount_order} "
                             "cannot count the references snapshots need")
        new_l1 = self._write_l2_copies(active_l1, new_l2, used)
        fd = self._require_fd()
        _pwrite_all(fd, l1_offset, struct.pack(f">{len(new_l1)}Q", *new_l1))
        _pwrite_all(fd, snap_offset, table)
        reftable = self._write_refblocks(used, refblocks, rt_clusters)
        _pwrite_all(fd, rt_offset, struct.pack(f">{len(reftable)}Q", *reftable))
        _pwrite_all(fd, 36, struct.pack(">IQQIIQ", len(new_l1), l1_offset, rt_offset,
                                        rt_clusters, len(snapshots), snap_offset))
        self.l1, self.l1_offset, self.snapshots = new_l1, l1_offset, list(snapshots)
        self.reftable, self.reftable_offset, self.reftable_clusters = \
            reftable, rt_offset, rt_clusters
        self._rb_cache.clear()
        self._l2_cache.clear()
        self._free_hint = 0

    def _count_tree(self, used: Counter[int], l1_offset: int, l1: list[int]) -> None:
        cs = self.cluster_size
        for c in range(_ceil_div(len(l1) * 8, cs)):
            used[l1_offset // cs + c] += 1
        for entry in l1:
            if entry & OFFSET_MASK:
                used[(entry & OFFSET_MASK) // cs] += 1
                self._count_l2(used, entry & OFFSET_MASK)

    def _count_l2(self, used: Counter[int], l2_offset: int) -> None:
        cs = self.cluster_size
        table = self._l2_table(l2_offset)
        for entry in struct.unpack(f">{self.l2_entries}Q", table):
            if entry & COMPRESSED:
                offset, size = self._compressed_span(entry)
                start = offset & ~511
                for c in range(start // cs, (start + size + (offset & 511) - 1) // cs + 1):
                    used[c] += 1
            elif entry and self._host_offset(entry):
                used[self._host_offset(entry) // cs] += 1

    def _write_l2_copies(self, active_l1: list[int], new_l2: dict[int, int],
                         used: Counter[int]) -> list[int]:
        """Fresh active L2 tables with COPIED set exactly where the refcount is 1."""
        cs, fd = self.cluster_size, self._require_fd()
        new_l1 = [0] * len(active_l1)
        for i, offset in new_l2.items():
            entries = list(struct.unpack(f">{self.l2_entries}Q",
                                         self._l2_table(active_l1[i] & OFFSET_MASK)))
            for j, e in enumerate(entries):
                host = 0 if e & COMPRESSED else e & OFFSET_MASK
                if host:
                    entries[j] = (e & ~COPIED) | (COPIED if used[host // cs] == 1 else 0)
            _pwrite_all(fd, offset, struct.pack(f">{self.l2_entries}Q", *entries))
            new_l1[i] = offset | COPIED
        return new_l1

    def _write_refblocks(self, used: Counter[int], refblocks: dict[int, int],
                         rt_clusters: int) -> list[int]:
        per, cs, fd = self.refcounts_per_block, self.cluster_size, self._require_fd()
        blocks = {t: bytearray(cs) for t in refblocks}
        for c, count in used.items():
            self._rc_put(blocks[c // per], c % per, count)
        for t, offset in refblocks.items():
            _pwrite_all(fd, offset, blocks[t])
        table = [0] * (rt_clusters * cs // 8)
        for t, offset in refblocks.items():
            table[t] = offset
        return table


class _Allocator:
    """Clusters for a snapshot commit: unused by the current image (refcount 0) and by
    the new one, so writing them disturbs neither."""

    def __init__(self, image: Qcow2Image, used: Counter[int]) -> None:
        self.image, self.used, self.cursor = image, used, 1

    def _free(self, c: int) -> bool:
        return c not in self.used and self.image._refcount(c) == 0

    def take(self, n: int) -> int:
        c, run = self.cursor, 0
        while run < n:
            run = run + 1 if self._free(c) else 0
            c += 1
        start = c - n
        for x in range(start, c):
            self.used[x] += 1
        if n == 1 or start == self.cursor:
            self.cursor = c
        return start * self.image.cluster_size

    def refcount_structures(self) -> tuple[int, int, dict[int, int]]:
        """(table offset, table clusters, {table index: block offset}) describing every
        cluster in use, themselves included."""
        image = self.image
        per, cs = image.refcounts_per_block, image.cluster_size
        blocks: dict[int, int] = {}
        table_offset, table_clusters = 0, 0
        while True:
            ranges = {c // per for c in self.used}
            need = _ceil_div((max(ranges) + 1) * 8, cs)
            if need > table_clusters:
                if table_clusters:  # too small: give it back, it was never referenced
                    for c in range(table_clusters):
                        del self.used[table_offset // cs + c]
                table_clusters = need
                if table_clusters * cs > MAX_REFTABLE_BYTES:
                    raise image._error(f"refcount table would exceed {MAX_REFTABLE_BYTES}")
                table_offset = self.take(table_clusters)
                continue
            missing = ranges - blocks.keys()
            if not missing:
                return table_offset, table_clusters, blocks
            for t in sorted(missing):
                blocks[t] = self.take(1)


def backing_path(image_path: str, name: str) -> str:
    """A backing file name as QEMU resolves it: relative to the overlay's directory."""
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(image_path), name)


def _create_layout(size: int, cluster_bits: int) -> tuple[int, int, int, int]:
    """(refcount table clusters, refcount blocks, L1 entries, L1 clusters) of a new image
    laid out as header, refcount table, refcount blocks, L1 table."""
    cs = 1 << cluster_bits
    per = cs * 8 // 16
    l1_entries = max(1, _ceil_div(size, cs * (cs // 8)))
    l1_clusters = _ceil_div(l1_entries * 8, cs)
    table, blocks = 1, 1
    while True:
        total = 1 + table + blocks + l1_clusters
        need_blocks = _ceil_div(total, per)
        need_table = _ceil_div(need_blocks * 8, cs)
        if (need_blocks, need_table) == (blocks, table):
            return table, blocks, l1_entries, l1_clusters
        blocks, table = need_blocks, need_table


def create(path: str, size: int | None = None, cluster_size: int = 65536,
           backing: str | None = None, backing_fmt: str | None = None) -> None:
    """Create a version 3 qcow2 image (16-bit refcounts, zlib). ``size`` defaults to the
    backing file's; a relative ``backing`` is taken relative to ``path``'s directory."""
    cluster_bits = cluster_size.bit_length() - 1
    if cluster_size != 1 << cluster_bits or not 9 <= cluster_bits <= 21:
        raise ValueError(f"qcow2 image {path}: cluster_size {cluster_size} is not a power "
                         "of two from 512 to 2 MiB")
    if backing is not None:
        backing_fmt, size = _probe_backing(path, backing, backing_fmt, size)
    if size is None or size < 0 or size % 512 or size > MAX_SIZE:
        raise ValueError(f"qcow2 image {path}: size {size} must be a multiple of 512 "
                         f"up to {MAX_SIZE:#x}")
    cs = cluster_size
    table, blocks, l1_entries, l1_clusters = _create_layout(size, cluster_bits)
    if l1_entries * 8 > MAX_L1_BYTES:
        raise ValueError(f"qcow2 image {path}: size {size} needs too large an L1 table")
    header = _create_header(path, size, cluster_bits, table, blocks, l1_entries,
                            backing, backing_fmt)
    total = 1 + table + blocks + l1_clusters
    reftable = [(1 + table + b) * cs for b in range(blocks)]
    refcounts = bytearray(blocks * cs)
    refcounts[:2 * total] = b"\x00\x01" * total
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _lock(fd, path, readonly=False)
        os.ftruncate(fd, 0)
        _pwrite_all(fd, 0, header + bytes(cs - len(header)))
        _pwrite_all(fd, cs, struct.pack(f">{table * cs // 8}Q",
                                        *reftable, *[0] * (table * cs // 8 - blocks)))
        _pwrite_all(fd, (1 + table) * cs, refcounts)
        os.ftruncate(fd, total * cs)  # the L1 table: zeros
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_header(path: str, size: int, cluster_bits: int, table: int, blocks: int,
                   l1_entries: int, backing: str | None, backing_fmt: str | None) -> bytes:
    cs = 1 << cluster_bits
    header_length = V3_HEADER + 8  # with the compression type byte, padded
    extensions = b""
    if backing_fmt is not None:
        fmt = backing_fmt.encode()
        extensions += struct.pack(">II", EXT_BACKING_FORMAT, len(fmt)) + fmt + \
            bytes(-len(fmt) % 8)
    extensions += struct.pack(">II", EXT_END, 0)
    name = backing.encode("utf-8", "surrogateescape") if backing is not None else b""
    name_offset = header_length + len(extensions) if name else 0
    if len(name) > MAX_BACKING_NAME or header_length + len(extensions) + len(name) > cs:
        raise ValueError(f"qcow2 image {path}: backing file name too long ({len(name)} bytes)")
    header = struct.pack(HEADER_FORMAT, MAGIC, 3, name_offset, len(name), cluster_bits, size,
                         0, l1_entries, (1 + table + blocks) * cs, cs, table, 0, 0)
    header += struct.pack(V3_FORMAT, 0, 0, 0, 4, header_length) + bytes(8)
    return header + extensions + name


def _probe_backing(path: str, backing: str, fmt: str | None,
                   size: int | None) -> tuple[str, int | None]:
    """The backing file's format, and its size when ``size`` is None, read the way
    opening the overlay will."""
    full = backing_path(path, backing)
    if fmt is None:
        fmt = "qcow2" if is_qcow2(full) else "raw"
    if fmt not in ("qcow2", "raw"):
        raise ValueError(f"qcow2 image {path}: backing format {fmt!r} is not supported")
    if size is not None:
        return fmt, size
    if fmt == "raw":  # a file or a block device, rounded up to sectors as QEMU does
        raw = open_raw(full, readonly=True, lock=False)
        raw.close()
        return fmt, _ceil_div(raw.size, 512) * 512
    with Qcow2Image(full, readonly=True) as img:
        return fmt, img.size
