"""The ``pc`` board: wiring of the ISA devices around the CPU (board logic only).

Ports and IRQs as on an IBM PC/AT compatible: PICs 0x20/0xA0 (+ ELCR 0x4D0), PIT
0x40-0x43 on IRQ0, COM1-COM4 at 0x3F8/0x2F8/0x3E8/0x2E8 on IRQ 4/3/4/3, debugcon at
0x402 and 0xE9, isa-debug-exit at 0xF4, POST port 0x80, system control port A 0x92.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from emu.devices.i440fx import I440fx
from emu.devices.i8254 import Pit8254
from emu.devices.i8259 import IsaPic
from emu.devices.isa_debug import DebugCon, DebugExit, PostPort
from emu.devices.pci import PciHost
from emu.devices.piix3 import Piix3Ide, Piix3Isa, Piix4Pm
from emu.devices.port92 import Port92
from emu.devices.uart16550 import Uart16550
from emu.host.chardev import Chardev
from emu.irq import IrqLine
from emu.machine.config import MachineConfig
from emu.machine.machine import Machine
from emu.machine.pc.multiboot import BootError, load_multiboot
from emu.memory.address_space import AddressSpace

COM_PORTS = ((0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3))
BIOS_STUB_SIZE = 0x10000
RESET_VECTOR_STUB = bytes([0xFA, 0xF4, 0xEB, 0xFD])  # cli; hlt; jmp back to hlt


def default_guest() -> str:
    """The bundled demo guest booted when no -kernel is given."""
    return str(resources.files("emu.guests").joinpath("demo.elf"))


def _bios_image(path: str | None) -> bytes:
    if path is None:
        rom = bytearray(b"\xff" * BIOS_STUB_SIZE)
        rom[0xFFF0:0xFFF0 + len(RESET_VECTOR_STUB)] = RESET_VECTOR_STUB
        return bytes(rom)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BootError(f"-bios {path}: {e.strerror}") from None


class PcMachine(Machine):
    """i440FX-era PC, ISA part: what the machine core needs to run guests."""

    TYPE_NAME = "pc"

    def __init__(self, cfg: MachineConfig, chardevs: dict[str, Chardev]) -> None:
        """``chardevs`` binds host backends: "serial0".."serial3", "debugcon"."""
        super().__init__(icount_shift=cfg.icount_shift, no_reboot=cfg.no_reboot)
        self.cfg = cfg
        self.kernel = cfg.kernel or default_guest()
        self.mem = AddressSpace(self.cpu.uc, cfg.ram_size, _bios_image(cfg.bios),
                                self.cpu.invalidate_code)
        self._build_pci()
        self.pic = IsaPic("pic", self)
        self.pic.on_intr = self.cpu.set_intr
        self.pit = Pit8254("pit", self)
        self.uarts = []
        for i, (base, irq) in enumerate(COM_PORTS):
            if f"serial{i}" in chardevs:
                uart = Uart16550(f"serial{i}", self, iobase=base, irq=irq)
                uart.chardev = chardevs[f"serial{i}"]
                self.uarts.append(uart)
        if "debugcon" in chardevs:
            for port in (0x402, 0xE9):
                con = DebugCon(f"debugcon-{port:x}", self, iobase=port)
                con.chardev = chardevs["debugcon"]
        DebugExit("debug-exit", self)
        PostPort("post", self)
        self._a20: dict[str, bool] = {}
        Port92("port92", self)
        for dev in self.children.values():
            dev.realize(self)  # composite devices realize their own children
        self.mem.fill_unassigned()
        self.system_reset("power on")

    def _build_pci(self) -> None:
        """Bus 0: 00:00.0 i440FX, 00:01.0 PIIX3 ISA, 00:01.1 IDE, 00:01.3 PM."""
        self.pci = PciHost("pci", self)
        self.i440fx = I440fx("i440fx", self, devfn=0)
        self.piix3 = Piix3Isa("piix3", self, devfn=8)
        self.ide = Piix3Ide("ide", self, devfn=9)
        self.pm = Piix4Pm("pm", self, devfn=11)
        self.pci.attach([self.i440fx, self.piix3, self.ide, self.pm])
        self.pci.reset_control = (self.piix3.rcr_read, self.piix3.rcr_write)

    def isa_irq(self, n: int) -> IrqLine:
        return self.pic.irq_line(n)

    def set_a20(self, source: str, enabled: bool) -> None:
        self._a20[source] = enabled
        self.cpu.set_a20(any(self._a20.values()))

    def acknowledge_interrupt(self) -> int:
        return self.pic.acknowledge()

    def boot(self) -> None:
        image = load_multiboot(self.kernel, self.cfg.append, self.cfg.initrd, self.mem)
        self.cpu.enter_flat32(image.entry, rax=0x2BADB002, rbx=image.info_addr)
