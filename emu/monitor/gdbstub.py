"""A gdb stub on GDB's remote serial protocol, as QEMU's ``-gdb`` / ``-s`` offer it.

GDB manual, appendix E "GDB Remote Serial Protocol": E.1 Overview (``$packet#cs``
framing, ``+``/``-`` acknowledgments, ``}`` escapes), E.2 Packets (``?``, ``g``/``G``,
``p``/``P``, ``m``/``M``, ``c``, ``s``, ``D``, ``k``, ``vCont``, ``z``/``Z``), E.3 Stop
Reply Packets (``T05``, ``W``), E.4 General Query Packets (``qSupported``, ``qXfer``,
``qRcmd``, ``QStartNoAckMode``), E.12 Interrupts (a bare 0x03 byte), E.11 Packet
Acknowledgment; appendix G "Target Descriptions" (G.4 Standard Target Features:
``org.gnu.gdb.i386.core``, ``.sse``, ``.segments``).

What follows QEMU (gdbstub/, target/i386/gdbstub.c): the architecture reported is
``i386:x86-64`` whenever the CPU model can enter long mode, and then outside 64-bit code
the general registers and RIP read zero-extended from 32 bits and R8-R15 read 0; memory
addresses are linear, translated through the guest's page tables, and a fault is
``E14``; a connection stops the guest, ``D`` lets it run on, ``k`` ends pyemu, and a
single step runs one instruction with interrupts held off. Breakpoints (``Z0``, ``Z1``)
never write guest memory: a code hook on the address alone (linear, CS.base + EIP)
stops the CPU before the instruction runs. Watchpoints (``Z2`` write, ``Z3`` read,
``Z4`` access) are memory hooks on the linear range, present only while one is set;
a hit ends the slice at the next block boundary (the engine cannot stop right after
the access without undoing it; in -icount mode that is the next instruction), so the
stop lands after the access, as on x86 hardware, but up to a translation block later.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import unicorn
import unicorn.x86_const as x

from emu.cpu.models import LM
from emu.host.sockaddr import ListeningSocket, check_unix_path, listen, parse_host_port
from emu.monitor.memory import AccessError, Paging, read_linear, read_physical, translate

if TYPE_CHECKING:
    from emu.machine.machine import Machine

log = logging.getLogger("emu.gdb")

PACKET_SIZE = 0x4000  # the largest packet we accept, as qSupported tells gdb
MAX_MEMORY = (PACKET_SIZE - 16) // 2  # bytes one 'm' reply can carry in hex
INTERRUPT = 0x03
SIGINT, SIGTRAP = 2, 5
HF_CS64 = 1 << 15  # QEMU's hflags: the code segment is 64-bit
PAGE = 0x1000
EFER = 0xC0000080
STOP_TRAP = f"T{SIGTRAP:02x}thread:01;"
# Z2/Z3/Z4: the engine's memory hooks, and the stop reason the reply names
WATCH_KINDS = {"2": (unicorn.UC_HOOK_MEM_WRITE, "watch"),
               "3": (unicorn.UC_HOOK_MEM_READ, "rwatch"),
               "4": (unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, "awatch")}


# -- packets (E.1 Overview, E.11 Packet Acknowledgment) -------------------------------

def checksum(data: bytes) -> int:
    """The modulo-256 sum of the packet's bytes between ``$`` and ``#``."""
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """``#``, ``$``, ``}`` and ``*`` as ``}`` followed by the byte XOR 0x20."""
    out = bytearray()
    for b in data:
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out, it = bytearray(), iter(data)
    for b in it:
        out.append(next(it, 0) ^ 0x20 if b == 0x7D else b)
    return bytes(out)


def frame(payload: str | bytes) -> bytes:
    """``$payload#xx``: the payload escaped, then its checksum in two hex digits."""
    data = escape(payload.encode() if isinstance(payload, str) else payload)
    return b"$" + data + b"#" + f"{checksum(data):02x}".encode()


@dataclass(frozen=True)
class Event:
    """What the reader found: a packet (``kind`` "packet", the unescaped payload), a
    packet with a bad checksum ("bad"), a 0x03 ("interrupt") or an ack ("+", "-")."""

    kind: str
    payload: bytes = b""


class PacketReader:
    """Splits the byte stream from gdb into events; bytes outside packets other than
    acks and 0x03 are ignored, as the protocol says."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while self._buf:
            first = self._buf[0]
            if first != ord("$"):
                del self._buf[0]
                if first == INTERRUPT:
                    events.append(Event("interrupt"))
                elif first in b"+-":
                    events.append(Event(chr(first)))
                continue
            end = self._buf.find(b"#")
            if end < 0 or len(self._buf) < end + 3:
                if len(self._buf) > 2 * PACKET_SIZE + 4:  # never ends: drop it
                    self._buf.clear()
                    events.append(Event("bad"))
                break
            body, cs = bytes(self._buf[1:end]), bytes(self._buf[end + 1:end + 3])
            del self._buf[:end + 3]
            try:
                ok = int(cs, 16) == checksum(body)
            except ValueError:
                ok = False
            events.append(Event("packet", unescape(body)) if ok else Event("bad"))
        return events


# -- the register file (G.4 Standard Target Features) ---------------------------------

@dataclass(frozen=True)
class Reg:
    """One register as the target description numbers it, in 'g' packet order."""

    name: str
    bits: int
    type: str
    feature: str
    group: str = ""


CORE, SSE, SEGMENTS, SYS = ("org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse",
                            "org.gnu.gdb.i386.segments", "org.pyemu.gdb.x86.sys")
GPR64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
         *(f"r{n}" for n in range(8, 16)))
GPR32 = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
SEGS = ("cs", "ss", "ds", "es", "fs", "gs")
FPU_CONTROL = ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
POINTERS = {"rbp": "data_ptr", "rsp": "data_ptr", "ebp": "data_ptr", "esp": "data_ptr"}


def register_file(wide: bool) -> tuple[Reg, ...]:
    """The registers of i386:x86-64 (``wide``) or i386, as gdb's own feature files
    (64bit-core.xml, 64bit-sse.xml, 64bit-segments.xml; 32bit-*.xml) list them, then
    the system registers as QEMU adds them."""
    bits = 64 if wide else 32
    gprs = GPR64 if wide else GPR32
    regs = [Reg(n, bits, POINTERS.get(n, "int64" if wide else "int32"), CORE) for n in gprs]
    regs.append(Reg("rip" if wide else "eip", bits, "code_ptr", CORE))
    regs.append(Reg("eflags", 32, "i386_eflags", CORE))
    regs += [Reg(n, 32, "int32", CORE) for n in SEGS]
    regs += [Reg(f"st{i}", 80, "i387_ext", CORE) for i in range(8)]
    regs += [Reg(n, 32, "int", CORE, "float") for n in FPU_CONTROL]
    regs += [Reg(f"xmm{i}", 128, "vec128", SSE) for i in range(16 if wide else 8)]
    regs.append(Reg("mxcsr", 32, "i386_mxcsr", SSE, "vector"))
    if wide:
        regs += [Reg(n, 64, "int", SEGMENTS) for n in ("fs_base", "gs_base")]
    regs += [Reg(n, bits, "int", SYS, "system") for n in ("cr0", "cr2", "cr3", "cr4")]
    regs.append(Reg("efer", 64, "int", SYS, "system"))
    return tuple(regs)


CORE_TYPES = """\
  <flags id="i386_eflags" size="4">
    <field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
    <field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
    <field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
    <field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
    <field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
    <field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
    <field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
    <field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
    <field name="ID" start="21" end="21"/>
  </flags>
"""
SSE_TYPES = """\
  <flags id="i386_mxcsr" size="4">
    <field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>
    <field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>
    <field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
    <field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>
    <field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>
    <field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
    <field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
  </flags>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>
"""


def target_xml(wide: bool) -> str:
    """The target description (appendix G): architecture, then one feature element per
    feature with its registers in 'g' order, after the types they use (a type belongs
    to the feature that defines it)."""
    arch = "i386:x86-64" if wide else "i386"
    parts = ['<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
             f"<target>\n<architecture>{arch}</architecture>\n"]
    feature = None
    for reg in register_file(wide):
        if reg.feature != feature:
            if feature is not None:
                parts.append("</feature>\n")
            feature = reg.feature
            parts.append(f'<feature name="{feature}">\n')
            parts.append({CORE: CORE_TYPES, SSE: SSE_TYPES}.get(feature, ""))
        group = f' group="{reg.group}"' if reg.group else ""
        parts.append(f'  <reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.type}"'
                     f"{group}/>\n")
    parts.append("</feature>\n</target>\n")
    return "".join(parts)


# -- the machine side (runs on the machine thread) -----------------------------------

def _uc_reg(name: str) -> int:
    return getattr(x, f"UC_X86_REG_{name.upper()}")


WIDE_NAME = dict(zip(GPR32, GPR64, strict=False)) | {"eip": "rip"}
FPU_UC = {"fctrl": "fpcw", "fstat": "fpsw", "ftag": "fptag"}


class Debugger:
    """What the stub does to the machine: registers, memory, breakpoints, steps. Every
    method runs on the machine thread (the session posts them there)."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.cpu = machine.cpu
        self.wide = bool(self.cpu.model.edx_ext & LM)
        self.regs = register_file(self.wide)
        self.breakpoints: dict[int, int] = {}  # linear address -> unicorn hook handle
        self.hit: int | None = None  # the breakpoint that stopped the CPU last
        self.watchpoints: dict[tuple[str, int, int], int] = {}  # (kind, addr, len) -> hook
        self.watch_hit: tuple[str, int] | None = None  # (stop reason, address)
        self._stepping_from: int | None = None

    # registers (QEMU's x86_cpu_gdb_read_register / write_register)
    def _cs64(self) -> bool:
        return bool(self.cpu.hflags & HF_CS64)

    def read_register(self, reg: Reg) -> int:
        uc, name = self.cpu.uc, WIDE_NAME.get(reg.name, reg.name)
        if name in GPR64 or name == "rip":
            if self._cs64():
                return uc.reg_read(_uc_reg(name))
            if name in GPR64[8:]:
                return 0
            return uc.reg_read(_uc_reg(name)) & 0xFFFFFFFF
        if name in SEGS:
            return self.cpu.segment(name).selector
        if name.startswith("st"):
            mantissa, exponent = uc.reg_read(_uc_reg(f"fp{name[2]}"))
            return mantissa | exponent << 64
        if name in FPU_CONTROL:
            return uc.reg_read(_uc_reg(FPU_UC[name])) if name in FPU_UC else 0
        if name == "efer":
            return uc.msr_read(EFER)
        return uc.reg_read(_uc_reg(name))

    def write_register(self, reg: Reg, value: int) -> bool:
        """Only the general registers, RIP and EFLAGS are written (False otherwise);
        outside 64-bit code, their low 32 bits, zero-extended."""
        name = WIDE_NAME.get(reg.name, reg.name)
        if name not in (*GPR64, "rip", "eflags"):
            return False
        if name != "eflags" and not self._cs64():
            if name in GPR64[8:]:
                return True  # as QEMU: they are not there outside 64-bit code
            value &= 0xFFFFFFFF
        self.cpu.uc.reg_write(_uc_reg(name), value)
        return True

    def encoded(self, reg: Reg) -> bytes:
        """The register as 'g' and 'p' carry it: target byte order, its own width."""
        return (self.read_register(reg) & ((1 << reg.bits) - 1)).to_bytes(reg.bits // 8,
                                                                           "little")

    def read_registers(self) -> bytes:
        return b"".join(self.encoded(r) for r in self.regs)

    def write_registers(self, data: bytes) -> None:
        pos = 0
        for reg in self.regs:
            size = reg.bits // 8
            if pos + size > len(data):
                break
            self.write_register(reg, int.from_bytes(data[pos:pos + size], "little"))
            pos += size

    # memory: linear addresses, through the page tables
    def read_memory(self, addr: int, length: int) -> bytes:
        return read_linear(self.machine, addr, length)

    def write_memory(self, addr: int, data: bytes) -> None:
        """Every page is translated before anything is written; AccessError or
        ValueError (not RAM) leave memory as it was."""
        paging = Paging.of(self.machine)

        def phys(a: int, n: int) -> bytes:
            return read_physical(self.machine.mem, a, n)

        pieces, pos = [], 0
        while pos < len(data):
            n = min(PAGE - ((addr + pos) & (PAGE - 1)), len(data) - pos)
            pa = translate(paging, phys, (addr + pos) & ((1 << 64) - 1))
            if not self.machine.mem.is_ram(pa, n):
                raise AccessError(addr + pos)
            pieces.append((pa, data[pos:pos + n]))
            pos += n
        for pa, chunk in pieces:
            self.machine.mem.write(pa, chunk)

    # execution
    def pc(self) -> int:
        """The linear address of the next instruction (what breakpoints compare)."""
        rip = self.cpu.uc.reg_read(x.UC_X86_REG_RIP)
        if self._cs64():
            return rip
        return (self.cpu.segment("cs").base + rip) & 0xFFFFFFFF

    def insert_breakpoint(self, addr: int) -> None:
        if addr not in self.breakpoints:
            self.breakpoints[addr] = self.cpu.uc.hook_add(
                unicorn.UC_HOOK_CODE, self._on_code, begin=addr, end=addr)
            self.cpu.uc.ctl_flush_tb()  # translated code does not call new hooks

    def remove_breakpoint(self, addr: int) -> bool:
        handle = self.breakpoints.pop(addr, None)
        if handle is None:
            return False
        self.cpu.uc.hook_del(handle)
        self.cpu.uc.ctl_flush_tb()
        return True

    def insert_watchpoint(self, kind: str, addr: int, length: int) -> None:
        key = (kind, addr, length)
        if key not in self.watchpoints:
            hooks, reason = WATCH_KINDS[kind]
            self.watchpoints[key] = self.cpu.uc.hook_add(
                hooks, lambda *_a, r=reason: self._on_access(r, addr), begin=addr,
                end=addr + max(length, 1) - 1)
            self.cpu.uc.ctl_flush_tb()

    def remove_watchpoint(self, kind: str, addr: int, length: int) -> bool:
        handle = self.watchpoints.pop((kind, addr, length), None)
        if handle is None:
            return False
        self.cpu.uc.hook_del(handle)
        self.cpu.uc.ctl_flush_tb()
        return True

    def clear(self) -> None:
        for addr in list(self.breakpoints):
            self.remove_breakpoint(addr)
        for key in list(self.watchpoints):
            self.remove_watchpoint(*key)

    def _on_code(self, uc: unicorn.Uc, addr: int, _size: int, _ud: object) -> None:
        if addr == self._stepping_from:
            return
        self.hit = addr
        uc.emu_stop()  # before the instruction runs
        self.machine.post(self.machine.stop)

    def _on_access(self, reason: str, addr: int) -> None:
        """An access to the watchpoint at ``addr`` (reported as QEMU does: the
        watchpoint's address). The instruction completes; the slice ends at the next
        block boundary (a stop here would re-run an access already done)."""
        if self.watch_hit is None:
            self.watch_hit = (reason, addr)
            self.cpu.kick()
            self.machine.post(self.machine.stop)

    def step(self) -> None:
        """One instruction, external interrupts held off (X86Cpu.step)."""
        cpu = self.cpu
        if cpu.halted:
            return
        self.hit = self.watch_hit = None
        self._stepping_from = self.pc()
        try:
            result = cpu.step()
        finally:
            self._stepping_from = None
        if result.triple_fault:
            self.machine.request_reset("triple fault")

    def resume(self) -> None:
        """Run on from here: off a breakpoint under the PC by one step first."""
        from emu.monitor.commands import resume

        self.hit = self.watch_hit = None
        if self.pc() in self.breakpoints:
            self.step()
        resume(self.machine)


# -- the session: one gdb connection ------------------------------------------------

class GdbSession:
    """Answers one gdb's packets. ``call(fn)`` runs ``fn`` on the machine thread and
    returns its result; ``send(bytes)`` writes to gdb (any thread)."""

    def __init__(self, debugger: Debugger, call: Callable[[Callable[[], Any]], Any],
                 send: Callable[[bytes], None]) -> None:
        self.dbg = debugger
        self.call = call
        self._send = send
        self._lock = threading.Lock()
        self.ack = True
        self.running = False  # a 'c' waits for its stop reply
        self.signal = SIGTRAP
        self.closed = False
        self.detached = False

    def reply(self, payload: str | bytes) -> None:
        self._raw(frame(payload))

    def _raw(self, data: bytes) -> None:
        with self._lock:  # stop replies come from the machine thread
            self._send(data)

    def handle(self, event: Event) -> None:
        """One event from the reader: acknowledge, answer, or interrupt."""
        if event.kind == "interrupt":
            self.interrupt()
        elif event.kind == "bad" and self.ack:
            self._raw(b"-")
        elif event.kind == "packet":
            if self.ack:
                self._raw(b"+")
            try:
                answer = self.dispatch(event.payload.decode("latin-1"))
            except Exception:  # a malformed packet or a failed request: gdb is told
                log.exception("gdb packet %r failed", event.payload[:64])
                answer = "E01"
            if answer is not None:
                self.reply(answer)

    def dispatch(self, pkt: str) -> str | None:
        """The reply to one packet; None when there is none yet (``c``) or ever."""
        if pkt.startswith(("qSupported", "qXfer:", "qRcmd,", "qAttached", "qC",
                           "qfThreadInfo", "qsThreadInfo", "QStartNoAckMode")):
            return self._query(pkt)
        if pkt.startswith("vCont"):
            return self._vcont(pkt)
        handler = self.HANDLERS.get(pkt[:1])
        return handler(self, pkt[1:]) if handler else ""

    # queries (E.4)
    def _query(self, pkt: str) -> str | None:
        if pkt.startswith("qSupported"):
            return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;swbreak+;hwbreak+;"
                    "vContSupported+;QStartNoAckMode+")
        if pkt == "QStartNoAckMode":
            self.reply("OK")  # acknowledged still; none from here on
            self.ack = False
            return None
        if pkt.startswith("qXfer:features:read:"):
            return self._xfer(pkt[len("qXfer:features:read:"):])
        if pkt.startswith("qRcmd,"):
            return self._monitor(bytes.fromhex(pkt[6:]).decode(errors="replace"))
        return {"qAttached": "1", "qC": "QC1", "qfThreadInfo": "m1",
                "qsThreadInfo": "l"}.get(pkt, "")

    def _xfer(self, args: str) -> str:
        annex, _, span = args.partition(":")
        if annex != "target.xml":
            return "E00"
        try:
            offset, length = (int(v, 16) for v in span.split(","))
        except ValueError:
            return "E01"
        text = target_xml(self.dbg.wide)
        chunk = text[offset:offset + length]
        return ("m" if offset + length < len(text) else "l") + chunk

    def _monitor(self, line: str) -> str:
        import emu.monitor.hmp  # noqa: F401  (registers every monitor command)
        from emu.monitor.commands import CommandError, Pending, execute

        try:
            out = self.call(lambda: execute(self.dbg.machine, line))
            if isinstance(out, Pending):
                out = out.wait()
        except CommandError as e:
            out = str(e)
        if out and not out.endswith("\n"):
            out += "\n"
        return out.encode().hex() if out else "OK"

    # registers and memory (E.2)
    def _status(self, _args: str) -> str:
        return STOP_TRAP

    def _read_all(self, _args: str) -> str:
        return self.call(self.dbg.read_registers).hex()

    def _write_all(self, args: str) -> str:
        try:
            data = bytes.fromhex(args)
        except ValueError:
            return "E01"
        self.call(lambda: self.dbg.write_registers(data))
        return "OK"

    def _register(self, args: str) -> tuple[Reg, str] | None:
        num, _, value = args.partition("=")
        try:
            n = int(num, 16)
        except ValueError:
            return None
        regs = self.dbg.regs
        return (regs[n], value) if 0 <= n < len(regs) else None

    def _read_one(self, args: str) -> str:
        found = self._register(args)
        if found is None:
            return "E01"
        reg = found[0]
        return self.call(lambda: self.dbg.encoded(reg)).hex()

    def _write_one(self, args: str) -> str:
        found = self._register(args)
        if found is None:
            return "E01"
        reg, text = found
        try:
            value = int.from_bytes(bytes.fromhex(text), "little")
        except ValueError:
            return "E01"
        return "OK" if self.call(lambda: self.dbg.write_register(reg, value)) else "E01"

    def _read_memory(self, args: str) -> str:
        try:
            addr, length = (int(v, 16) for v in args.split(","))
        except ValueError:
            return "E01"
        try:
            return self.call(lambda: self.dbg.read_memory(addr, min(length, MAX_MEMORY))).hex()
        except AccessError:
            return "E14"

    def _write_memory(self, args: str) -> str:
        span, _, text = args.partition(":")
        try:
            addr, length = (int(v, 16) for v in span.split(","))
            data = bytes.fromhex(text)
        except ValueError:
            return "E01"
        if len(data) != length:
            return "E01"
        try:
            self.call(lambda: self.dbg.write_memory(addr, data))
        except (AccessError, ValueError):
            return "E14"
        return "OK"

    # breakpoints (E.2 z/Z)
    def _breakpoint(self, args: str, insert: bool) -> str:
        """``type,addr,kind``: 0/1 breakpoints (kind: the instruction's length, unused),
        2/3/4 watchpoints (kind: the length watched)."""
        kind, _, rest = args.partition(",")
        if kind not in "01234" or len(kind) != 1:
            return ""
        try:
            addr, length = (int(v, 16) for v in rest.split(",")[:2])
        except ValueError:
            return "E01"
        dbg = self.dbg
        if kind in "01":
            self.call(lambda: dbg.insert_breakpoint(addr) if insert
                      else dbg.remove_breakpoint(addr))
        else:
            self.call(lambda: dbg.insert_watchpoint(kind, addr, length) if insert
                      else dbg.remove_watchpoint(kind, addr, length))
        return "OK"

    def _insert(self, args: str) -> str:
        return self._breakpoint(args, True)

    def _remove(self, args: str) -> str:
        return self._breakpoint(args, False)

    # execution
    def _step(self, _args: str = "") -> str:
        self.call(self.dbg.step)
        self.signal = SIGTRAP
        return self._trap_reply()

    def _trap_reply(self) -> str:
        """T05, with the watchpoint or breakpoint that caused it (E.3)."""
        if self.dbg.watch_hit is not None:
            reason, addr = self.dbg.watch_hit
            return f"T{SIGTRAP:02x}{reason}:{addr:x};thread:01;"
        if self.dbg.hit is not None:
            return f"{STOP_TRAP}swbreak:;"
        return STOP_TRAP

    def _continue(self, _args: str = "") -> str | None:
        from emu.monitor.commands import CommandError

        self.signal = SIGTRAP
        self.running = True
        try:
            self.call(self.dbg.resume)
        except CommandError as e:
            self.running = False
            log.warning("gdb: %s", e)
            return f"T{SIGTRAP:02x}thread:01;"
        return None

    def _vcont(self, pkt: str) -> str | None:
        if pkt == "vCont?":
            return "vCont;c;C;s;S"
        actions = [a.split(":")[0] for a in pkt.split(";")[1:]]
        if not actions:
            return ""
        if actions[0][:1] in ("s", "S"):
            return self._step()
        if actions[0][:1] in ("c", "C"):
            return self._continue()
        return ""

    def _detach(self, _args: str) -> None:
        """The OK goes before the guest runs again, as QEMU's does: a guest that ends
        at once would otherwise close the connection before gdb has its answer. From
        here on the machine's events are not gdb's (no W for a guest that exits)."""
        self.detached = True
        self.call(self.dbg.clear)
        self.reply("OK")

        def let_go() -> None:
            if self.dbg.machine.runstate in ("paused", "prelaunch"):  # as QEMU, even -S
                self.dbg.resume()

        self.call(let_go)

    def _kill(self, _args: str) -> None:
        self.closed = True
        self.dbg.machine.post(lambda: self.dbg.machine.request_shutdown(
            0, "killed by gdb", "host-ui"))

    def interrupt(self) -> None:
        """Ctrl-C (E.12): stop the guest; the stop reply says SIGINT."""
        if self.running:
            self.signal = SIGINT
            self.dbg.machine.post(self.dbg.machine.stop)

    def on_event(self, event: str, _data: dict[str, Any]) -> None:
        """The machine's events (its thread): the stop reply a 'c' waits for, or the
        exit status (W) when pyemu ends."""
        machine = self.dbg.machine
        if self.detached:
            return
        if event == "SHUTDOWN" and machine.exit_status is not None and not self.closed:
            self.closed = True
            self.running = False
            self.reply(f"W{machine.exit_status & 0xFF:02x}")
        elif event == "STOP" and self.running:
            self.running = False
            if self.signal == SIGTRAP:
                self.reply(self._trap_reply())
            else:
                self.reply(f"T{self.signal:02x}thread:01;")

    HANDLERS: dict[str, Callable[[GdbSession, str], str | None]] = {
        "?": _status, "g": _read_all, "G": _write_all, "p": _read_one, "P": _write_one,
        "m": _read_memory, "M": _write_memory, "Z": _insert, "z": _remove,
        "s": _step, "S": _step, "c": _continue, "C": _continue, "D": _detach, "k": _kill,
        "H": lambda self, args: "OK", "T": lambda self, args: "OK",
    }


# -- the server: -gdb DEV ---------------------------------------------------------------

def parse_spec(spec: str) -> tuple[str, int] | str:
    """QEMU's -gdb device: ``tcp:[HOST]:PORT`` (no host: loopback, 127.0.0.1) or
    ``unix:PATH`` (``,server``/``,nowait`` accepted: the stub always listens), or a
    bare ``PORT`` / ``:PORT``. ValueError names what is wrong."""
    body, *opts = spec.split(",")
    for opt in opts:
        if opt.partition("=")[0] not in ("server", "nowait", "wait", "ipv4", "ipv6"):
            raise ValueError(f"unknown option '{opt}'")
    if body.startswith("unix:"):
        return check_unix_path(body[5:])
    text = body[4:] if body.startswith("tcp:") else body
    if text.isdigit():
        text = ":" + text
    host, port = parse_host_port(text)
    return (host or "127.0.0.1", port)


class GdbServer:
    """Listens on the -gdb device; serves one gdb at a time on its own thread, then
    waits for the next. ``start(machine)`` and ``close()`` as the QMP servers have."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.listener: ListeningSocket = listen(parse_spec(spec))
        self._conn: socket.socket | None = None
        self._session: GdbSession | None = None
        self._closed = False

    def start(self, machine: Machine) -> None:
        debugger = Debugger(machine)
        machine.listeners.append(self._on_event)
        threading.Thread(target=self._accept_loop, args=(machine, debugger), name="gdb",
                         daemon=True).start()

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        session = self._session
        if session is not None:
            try:
                session.on_event(event, data)
            except OSError:
                pass  # gdb went away; the reader sees it

    def _accept_loop(self, machine: Machine, debugger: Debugger) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._serve(machine, debugger, conn)

    def _serve(self, machine: Machine, debugger: Debugger, conn: socket.socket) -> None:
        def call(fn: Callable[[], Any]) -> Any:
            return machine.post(fn).result()

        session = GdbSession(debugger, call, conn.sendall)
        self._conn = conn
        machine.post(machine.stop).result()  # as QEMU: a connection stops the guest
        self._session = session
        reader = PacketReader()
        try:
            while not session.closed and not session.detached:
                data = conn.recv(PACKET_SIZE)
                if not data:
                    break
                for event in reader.feed(data):
                    session.handle(event)
        except OSError:
            pass
        finally:
            self._session = None
            if not session.detached and not session.closed:  # gdb vanished: let go
                machine.post(debugger.clear)
            conn.close()
            self._conn = None

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        if self._conn is not None:
            try:
                self._conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
