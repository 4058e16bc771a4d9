"""A TCP proxy between a migration's source and destination that knows the stream's
framing and the switchover's messages well enough to hurt exactly one of them: cut the
connection there, reset it, stall it, or drop that message and forward the rest.

Stages, in the order they cross (emu/migration/live.py and stream.py):
  accept   destination -> source, the first control message
  precopy  source -> destination, RAM records sent while the guest runs
  tail     source -> destination, from RAM_END on: the stream's end, the guest stopped
  ready    destination -> source, the second control message
  go       source -> destination, the control message after the stream
  running  destination -> source, the third control message
"""

from __future__ import annotations

import socket
import struct
import threading

STAGES = ("accept", "precopy", "tail", "ready", "go", "running")
ACTIONS = ("cut", "reset", "stall", "drop")
CONTROL = 5  # u8 code, u32 length
RAM_END = 0x03
RECORD_HEAD = {0x01: 12, 0x02: 17, 0x04: None, 0x05: None}  # tag -> bytes after the tag


class StreamWatcher:
    """Follows the source's stream to tell where its RAM records start and where
    RAM_END is (offsets from the stream's first byte)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.records_at: int | None = None
        self.tail_at: int | None = None

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.tail_at is None and self._step():
            pass

    def _need(self, n: int) -> bool:
        return len(self.buf) - self.pos >= n

    def _step(self) -> bool:
        if self.records_at is None:
            return self._head()
        if not self._need(1):
            return False
        tag = self.buf[self.pos]
        if tag == RAM_END:
            self.tail_at = self.pos
            return False
        size = RECORD_HEAD[tag]
        if tag == 0x02:
            if not self._need(1 + size):
                return False
            length = struct.unpack_from("<I", self.buf, self.pos + 14)[0]
            size += length
        elif size is None:  # disk records: a drive name first
            if not self._need(3):
                return False
            name = struct.unpack_from("<H", self.buf, self.pos + 1)[0]
            if not self._need(3 + name + 12):
                return False
            length = struct.unpack_from("<I", self.buf, self.pos + 3 + name + 8)[0]
            size = 2 + name + 12 + (length if tag == 0x04 else 0)
        if not self._need(1 + size):
            return False
        self.pos += 1 + size
        return True

    def _head(self) -> bool:
        if not self._need(12):
            return False
        emu = struct.unpack_from("<H", self.buf, 10)[0]
        at = 12 + emu + 1
        if not self._need(at + 4 - self.pos):
            return False
        desc = struct.unpack_from("<I", self.buf, at)[0]
        if not self._need(at + 4 + desc - self.pos):
            return False
        self.pos = self.records_at = at + 4 + desc
        return True


class Proxy:
    """Listens on a free loopback port and forwards one connection to ``target_port``,
    doing ``action`` at ``stage`` (or nothing, with ``stage`` None)."""

    def __init__(self, target_port: int, stage: str | None, action: str = "cut") -> None:
        assert stage is None or stage in STAGES and action in ACTIONS
        self.target_port, self.stage, self.action = target_port, stage, action
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.hit = threading.Event()  # the fault happened
        self.stalled = threading.Event()
        self.after_ready = False  # the source's bytes are control messages from here on
        self.socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        """End both connections (shutdown first: it wakes a thread blocked on them)."""
        self.stalled.set()
        self.listener.close()
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _serve(self) -> None:
        try:
            src, _ = self.listener.accept()
        except OSError:
            return
        dst = socket.create_connection(("127.0.0.1", self.target_port))
        self.socks = [src, dst]
        threading.Thread(target=self._source_to_destination, args=(src, dst),
                         daemon=True).start()
        self._destination_to_source(dst, src)

    # -- the fault ---------------------------------------------------------------------
    def _fault(self) -> bool:
        """Do the fault (for every action but drop); True if forwarding must stop."""
        with self._lock:
            first = not self.hit.is_set()
            self.hit.set()
        if self.action == "drop":
            return False
        if first and self.action in ("cut", "reset"):
            for s in self.socks:
                if self.action == "reset":  # closing with a zero linger sends RST
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:  # SHUT_RD wakes the other thread's recv without sending anything
                    s.shutdown(socket.SHUT_RD if self.action == "reset" else socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        if self.action == "stall":
            self.stalled.wait()
        return True

    # -- the two directions --------------------------------------------------------------
    def _destination_to_source(self, dst: socket.socket, src: socket.socket) -> None:
        names = iter(("accept", "ready", "running"))
        buf = b""
        while True:
            try:
                data = dst.recv(65536)
            except OSError:
                return
            if not data:
                self._end(src)
                return
            buf += data
            while len(buf) >= CONTROL:
                n = struct.unpack_from("<I", buf, 1)[0]
                if len(buf) < CONTROL + n:
                    break
                frame, buf = buf[:CONTROL + n], buf[CONTROL + n:]
                name = next(names, "later")
                if name == "ready":
                    self.after_ready = True
                if name == self.stage and self._fault():
                    return
                if name == self.stage and self.action == "drop":
                    continue
                if not self._send(src, frame):
                    return

    def _source_to_destination(self, src: socket.socket, dst: socket.socket) -> None:
        watcher = StreamWatcher()
        seen = 0
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                self._end(dst)
                return
            if self.after_ready:
                if self.stage == "go" and self._fault():
                    return
                if self.stage == "go" and self.action == "drop":
                    continue
            else:
                watcher.feed(data)
                data = self._in_stream(watcher, seen, data, dst)
                seen += len(data) if data is not None else 0
                if data is None:
                    return
            if not self._send(dst, data):
                return

    def _in_stream(self, watcher: StreamWatcher, seen: int, data: bytes,
                   dst: socket.socket) -> bytes | None:
        """The stream's bytes to forward (None: stop), once the stage is reached. What
        comes before the stage goes through first, even when one read brought both:
        under load the head and the first records arrive together, and a cut that took
        the head with it would be a connection with no stream at all."""
        if self.stage == "precopy" and watcher.records_at is not None \
                and seen + len(data) > watcher.records_at:
            cut = max(watcher.records_at - seen, 0)
        elif self.stage == "tail" and watcher.tail_at is not None \
                and seen + len(data) > watcher.tail_at:
            cut = max(watcher.tail_at - seen, 0)
        else:
            return data
        if self.hit.is_set() and self.action == "drop":
            return data  # one piece dropped is enough to corrupt the stream
        if self.action != "drop" and cut and not self._send(dst, data[:cut]):
            return None
        if self._fault():
            return None
        return data[:cut] + data[cut + 4096:]  # drop: a piece out of the middle

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        """Forward; when the receiver is gone, the sender's writes fail too, as they
        would with no proxy between them."""
        try:
            sock.sendall(data)
            return True
        except OSError:
            self.close()
            return False

    def _end(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
