"""The ``pc`` board: wiring of the ISA devices around the CPU (board logic only).

Ports and IRQs as on an IBM PC/AT compatible: PICs 0x20/0xA0 (+ ELCR 0x4D0), PIT
0x40-0x43 on IRQ0, COM1-COM4 at 0x3F8/0x2F8/0x3E8/0x2E8 on IRQ 4/3/4/3, debugcon at
0x402 and 0xE9, POST port 0x80, system control port A 0x92; with -device, isa-debug-exit
(plug.py).
A direct Linux boot has no firmware, so the board does the firmware's ACPI part: it
places the PIIX4 PM registers at 0x600 (as SeaBIOS does) and builds ACPI tables
(acpi.py) in an E820 ACPI-reclaim area at the top of low RAM. With -bios, -kernel
bzImage goes through the firmware instead, as QEMU offers it: fw_cfg items for each part
and the genroms/ option ROM that loads them (firmware/linuxboot.S), named in `bootorder`.
"""

from __future__ import annotations

import struct
from importlib import resources
from pathlib import Path
from typing import Any

from emu.cpu.models import find_model
from emu.devices import fw_cfg, piix3
from emu.devices.base import Device
from emu.devices.fw_cfg import FwCfg, e820_table
from emu.devices.i440fx import I440fx
from emu.devices.i8042 import I8042
from emu.devices.i8254 import Pit8254
from emu.devices.i8259 import IsaPic
from emu.devices.ide import IdeChannel, IdeDrive
from emu.devices.isa_debug import DebugCon, PostPort
from emu.devices.mc146818 import Rtc, pc_nvram
from emu.devices.pci import PciHost
from emu.devices.piix3 import Piix3Ide, Piix3Isa, Piix4Pm
from emu.devices.port92 import Port92
from emu.devices.uart16550 import Uart16550
from emu.host import block
from emu.host.block import BlockBackend, DriveSpec
from emu.host.chardev import Chardev
from emu.irq import IrqLine
from emu.machine.config import MachineConfig, drive_id, to_stream
from emu.machine.machine import Machine
from emu.machine.pc import acpi, hotplug, linux, multiboot
from emu.machine.pc.multiboot import BootError, check_multiboot, load_multiboot, read_file
from emu.machine.pc.plug import DeviceOption, is_pci, parse_device, place
from emu.memory.address_space import AddressSpace
from emu.migration.live import RunRefused

COM_PORTS = ((0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3))
IDE_CHANNELS = ((0x1F0, 0x3F6, 14), (0x170, 0x376, 15))
E820_RAM, E820_RESERVED, E820_ACPI = 1, 2, 3
# Below 1 MiB: conventional memory up to the (absent) EBDA, then the BIOS area.
EBDA_BASE, BIOS_AREA = 0x9FC00, 0xF0000
BIOS_STUB_SIZE = 0x10000
IDETIM_PRIMARY, IDETIM_SECONDARY, IDE_DECODE = 0x40, 0x42, 0x8000
# The IDTR firmware leaves when a loader takes over (the real-mode IVT), as under QEMU.
REAL_MODE_IDT = (0, 0x3FF)
BIOS_MAX = 0x40000  # SeaBIOS's largest build; the board has no flash for more
RESET_VECTOR_STUB = bytes([0xFA, 0xF4, 0xEB, 0xFD])  # cli; hlt; jmp back to hlt
# ACPI for a direct Linux boot: the tables' area just below the top of low RAM, the PM
# register base SeaBIOS programs, and the reset register the FADT names (RCR at 0xCF9;
# 06h = SRST | RST_CPU).
ACPI_AREA_SIZE = 0x10000
PM_BASE = 0x600
PM_BLOCK = acpi.PmBlock(pm_base=PM_BASE, sci_irq=piix3.SCI_IRQ, smi_cmd=0xB2,
                        acpi_enable=piix3.ACPI_ENABLE, acpi_disable=piix3.ACPI_DISABLE,
                        reset_port=0xCF9, reset_value=0x06)
# Where Linux (and ACPICA) also scan for an RSDP: the first KiB of the EBDA, found from
# the BIOS data area word at 40Eh. The board's EBDA is the reserved 1 KiB below 640 KiB.
BDA_EBDA_SEGMENT = 0x40E


def default_guest() -> str:
    """The demo guest as a Multiboot kernel, loaded when a machine has no -kernel, -bios
    or drive (the command line gives such a machine the demo's disk image instead)."""
    return str(resources.files("emu.guests").joinpath("demo.elf"))


OWN_BIOS = Path(__file__).resolve().parents[3] / "firmware" / "build" / "bios.bin"


def firmware_path(name: str) -> str:
    """-bios NAME: a file; a bare name that is no file here is looked up among pyemu's
    built firmware (``bios.bin`` is pyemu's BIOS), as QEMU looks in its data directory."""
    built = OWN_BIOS.parent / name
    if "/" not in name and not Path(name).exists() and built.exists():
        return str(built)
    return name


def _bios_image(path: str | None, firmware_boot: bool) -> bytes:
    """The ROM: ``-bios``; else pyemu's own BIOS when the firmware boots the machine
    (drives without -kernel); else a stub whose reset vector halts."""
    if path is None and firmware_boot:
        if not OWN_BIOS.exists():
            raise BootError(f"{OWN_BIOS} is missing: 'make' builds pyemu's BIOS "
                            "(or give -bios FILE)")
        path = str(OWN_BIOS)
    if path is None:
        rom = bytearray(b"\xff" * BIOS_STUB_SIZE)
        rom[0xFFF0:0xFFF0 + len(RESET_VECTOR_STUB)] = RESET_VECTOR_STUB
        return bytes(rom)
    path = firmware_path(path)
    image = read_file(path, "-bios", BIOS_MAX)
    if not image or len(image) % 0x10000 or len(image) > BIOS_MAX:
        raise BootError(f"-bios {path}: {len(image)} bytes: a BIOS image is a multiple of "
                        f"64 KiB, at most {BIOS_MAX // 1024} KiB")
    return image


LINUXBOOT_ROM = OWN_BIOS.with_name("linuxboot.bin")
LINUXBOOT_FILE = "genroms/linuxboot_dma.bin"


def _linux_items(fw: FwCfg, image: linux.LinuxImage, cmdline: str, initrd: bytes | None,
                 initrd_path: str | None, ram_below_4g: int) -> None:
    """``-kernel`` through firmware, as QEMU's pc board offers it: each part of the boot
    as an address, size and data item, and the option ROM that loads them (first in the
    boot order)."""
    try:
        rom = LINUXBOOT_ROM.read_bytes()
    except OSError as e:
        raise BootError(f"{LINUXBOOT_ROM}: {e.strerror}: 'make' builds pyemu's firmware, "
                        "which boots -kernel through -bios") from None
    boot = linux.firmware_boot(image, cmdline, None if initrd is None else len(initrd),
                               initrd_path, ram_below_4g)
    parts = [((fw_cfg.SETUP_ADDR, fw_cfg.SETUP_SIZE, fw_cfg.SETUP_DATA),
              boot.setup_addr, boot.setup),
             ((fw_cfg.KERNEL_ADDR, fw_cfg.KERNEL_SIZE, fw_cfg.KERNEL_DATA),
              boot.kernel_addr, image.kernel),
             ((fw_cfg.CMDLINE_ADDR, fw_cfg.CMDLINE_SIZE, fw_cfg.CMDLINE_DATA),
              boot.cmdline_addr, boot.cmdline)]
    if initrd is not None:
        parts.append(((fw_cfg.INITRD_ADDR, fw_cfg.INITRD_SIZE, fw_cfg.INITRD_DATA),
                      boot.initrd_addr, initrd))
    for (addr_key, size_key, data_key), addr, data in parts:
        fw.add_u32(addr_key, addr)
        fw.add_u32(size_key, len(data))
        fw.add_bytes(data_key, data)
    fw.add_file(LINUXBOOT_FILE, rom)
    fw.add_file("bootorder", f"/rom@{LINUXBOOT_FILE}\n".encode())


def prepare() -> None:
    """What every pc machine of this process shares, made once before any is built (a
    bare destination does it while it waits for its stream): the DSDT's slots, and the
    disk image formats' code."""
    acpi.slots_aml(piix3.HOTPLUG_SLOTS, piix3.PIRQ_IRQS)
    block.load_formats()


class PcMachine(Machine):
    """i440FX-era PC, ISA part: what the machine core needs to run guests."""

    TYPE_NAME = "pc"

    def __init__(self, cfg: MachineConfig, chardevs: dict[str, Chardev],
                 blocks: dict[int, BlockBackend] | None = None,
                 named: dict[str, Chardev] | None = None) -> None:
        """Host bindings: ``chardevs`` for "serial0".."serial3" and "debugcon", ``blocks``
        the opened image of each IDE index in ``cfg.drives``, ``named`` the chardevs by
        id that devices name (chardev=ID; a registry chardev-add adds to)."""
        super().__init__(icount_shift=cfg.icount_shift, no_reboot=cfg.no_reboot,
                         no_shutdown=cfg.no_shutdown, cpu_model=find_model(cfg.cpu))
        self.cfg = cfg
        self.blocks = dict(blocks or {})
        self.chardevs: dict[str, Chardev] = named if named is not None else {}
        self.plugged: dict[str, DeviceOption] = {}  # object name -> its -device
        # A bzImage (by content) takes Linux's boot protocol, anything else Multiboot.
        # Read and checked once here, so a bad file is a launch error, and loaded again
        # from these bytes on every reset.
        image = self._linux_image(cfg)
        # The firmware boots from the reset vector with -bios or drives and no -kernel,
        # and with a Linux -kernel given -bios or needing its real-mode setup (through
        # fw_cfg); otherwise our loaders put -kernel (or, with neither, the bundled demo
        # guest) in RAM themselves.
        if cfg.kernel is None:
            firmware_boot = cfg.bios is not None or bool(cfg.drives)
        else:
            # A Linux kernel that only enters through its real-mode setup needs BIOS
            # services: it boots through pyemu's BIOS unless -bios names another.
            firmware_boot = image is not None and (cfg.bios is not None
                                                   or image.needs_real_mode)
        self.kernel = None if firmware_boot else cfg.kernel or default_guest()
        self.linux = None if firmware_boot else image
        self.initrd = read_file(cfg.initrd, "-initrd", cfg.ram_size) \
            if image is not None and cfg.initrd else None
        with self.cpu.map_batch():  # one update of the CPU's region cache, at the end
            self._build(cfg, chardevs, blocks or {}, image, firmware_boot)
        awaiting_stream = cfg.incoming is not None
        if awaiting_stream and self.kernel is not None and self.linux is None:
            check_multiboot(self.kernel, cfg.ram_size)  # a wrong file is refused now
        self.system_reset("power on", load_guest=not awaiting_stream)

    def _build(self, cfg: MachineConfig, chardevs: dict[str, Chardev],
               blocks: dict[int, BlockBackend], image: linux.LinuxImage | None,
               firmware_boot: bool) -> None:
        """Memory and devices, realized."""
        self.mem = AddressSpace(self.cpu.uc, cfg.ram_size, _bios_image(cfg.bios, firmware_boot),
                                self.cpu.invalidate_code, self.cpu.invalidate_ram)
        self._build_pci()
        self._build_ide(cfg, blocks or {})
        self._build_fw_cfg(cfg, image if firmware_boot else None)
        self.pic = IsaPic("pic", self)
        self.pic.on_intr = self.cpu.set_intr
        self.pit = Pit8254("pit", self)
        self.i8042 = I8042("i8042", self)
        self.rtc = Rtc("rtc", self, base=cfg.rtc_base, nvram_init=pc_nvram(
            self.mem.below_4g, self.mem.above_4g, cfg.boot_order))
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
        self._plug_configured()
        PostPort("post", self)
        self._a20: dict[str, bool] = {}
        Port92("port92", self)
        for dev in self.children.values():
            if isinstance(dev, Device):
                dev.realize_all(self)
        self.mem.fill_unassigned()

    def _build_pci(self) -> None:
        """Bus 0: 00:00.0 i440FX, 00:01.0 PIIX3 ISA, 00:01.1 IDE, 00:01.3 PM."""
        self.pci = PciHost("pci", self)
        self.i440fx = I440fx("i440fx", self, devfn=0)
        self.piix3 = Piix3Isa("piix3", self, devfn=8)
        self.ide = Piix3Ide("ide", self, devfn=9)
        self.pm = Piix4Pm("pm", self, devfn=11)
        self.pci.attach([self.i440fx, self.piix3, self.ide, self.pm])
        self.pci.reset_control = (self.piix3.rcr_read, self.piix3.rcr_write)

    def _plug_configured(self) -> None:
        """The -device devices (and those a description carries), each PCI one on bus 0
        at its slot; the configuration keeps their canonical specs."""
        specs, self.cfg.devices = list(self.cfg.devices), []
        taken = {f.devfn for f in self.pci.functions()}
        for spec in specs:
            option = place(parse_device(spec), taken)
            dev = hotplug.plug(self, option, self.chardevs.get(option.chardev or ""))
            if is_pci(dev):
                self.pci.plug(dev)  # type: ignore[arg-type]
                taken.add(option.devfn)  # type: ignore[arg-type]

    def pci_functions(self) -> list:
        return self.pci.functions()

    def pci_intx_changed(self) -> None:
        if self.piix3.realized:
            self.piix3.route_intx()

    def pci_eject(self, slot: int) -> None:
        hotplug.eject_slot(self, slot)

    def route_pirqs(self) -> None:
        """The firmware's PCI interrupt duty for a direct boot: PIRQA-D to the ISA IRQs
        the DSDT's _PRT names (piix3.PIRQ_IRQS), as SeaBIOS programs them."""
        for pirq, irq in enumerate(piix3.PIRQ_IRQS):
            self.piix3.config_write(piix3.PIRQ_ROUTE + pirq, 1, irq)

    def _build_ide(self, cfg: MachineConfig, blocks: dict[int, BlockBackend]) -> None:
        """Two legacy channels under the PIIX3 IDE function, a drive per -drive index."""
        channels = [IdeChannel(f"ide{n}", self.ide, iobase=base, ctlbase=ctl, irq=irq)
                    for n, (base, ctl, irq) in enumerate(IDE_CHANNELS)]
        self._drive_objects: dict[int, IdeDrive] = {}
        for spec in cfg.drives:
            drive = IdeDrive("master" if spec.unit == 0 else "slave", channels[spec.channel],
                             media=spec.media)
            drive.backend = blocks.get(spec.index)
            self._drive_objects[spec.index] = drive

    def drives(self) -> list[tuple[str, DriveSpec, IdeDrive]]:
        """Each -drive: its id (``id=``, else QEMU's ide1-cd0 names), its configuration
        as it is now (a changed CD's new image), and its IdeDrive."""
        return [(drive_id(spec), spec, self._drive_objects[spec.index])
                for spec in self.cfg.drives]

    def stream_config(self) -> dict[str, Any]:
        """The configuration a migration stream carries to build this machine from."""
        return to_stream(self.cfg)

    @staticmethod
    def _linux_image(cfg: MachineConfig) -> linux.LinuxImage | None:
        if cfg.kernel is None:
            return None
        data = read_file(cfg.kernel, "-kernel", cfg.ram_size)
        return linux.parse_bzimage(data, cfg.kernel) if linux.is_bzimage(data) else None

    def _build_fw_cfg(self, cfg: MachineConfig, firmware_linux: linux.LinuxImage | None) -> None:
        """The firmware's view of the machine, as QEMU's pc board fills fw_cfg."""
        fw = self.fw_cfg = FwCfg("fw_cfg", self)
        fw.add_u64(fw_cfg.RAM_SIZE, cfg.ram_size)
        fw.add_u16(fw_cfg.NB_CPUS, 1)
        fw.add_u16(fw_cfg.MAX_CPUS, 1)
        fw.add_u16(fw_cfg.NOGRAPHIC, 1)  # no VGA at all: firmware talks on COM1
        fw.add_u16(fw_cfg.BOOT_DEVICE, ord(cfg.boot_order[0]))
        ram = [(0, self.mem.below_4g, E820_RAM)]
        if self.mem.above_4g:
            ram.append((1 << 32, self.mem.above_4g, E820_RAM))
        fw.add_file("etc/e820", e820_table(ram))
        fw.add_file("etc/boot-fail-wait", struct.pack("<i", -1))
        if self.kernel is None:
            fw.add_file("etc/pyemu/acpi", self._acpi_item())
        if firmware_linux is not None:
            _linux_items(fw, firmware_linux, cfg.append, self.initrd, cfg.initrd,
                         self.mem.below_4g)

    def memory_map(self) -> list[tuple[int, int, int]]:
        """The E820 map a loader hands the OS: RAM with the legacy holes below 1 MiB and,
        for a direct Linux boot, the ACPI tables' area at the top of low RAM."""
        low_top = self.acpi_area() if self.linux is not None else self.mem.below_4g
        ranges = [(0, EBDA_BASE, E820_RAM), (EBDA_BASE, 0xA0000 - EBDA_BASE, E820_RESERVED),
                  (BIOS_AREA, 0x100000 - BIOS_AREA, E820_RESERVED),
                  (0x100000, low_top - 0x100000, E820_RAM)]
        if low_top != self.mem.below_4g:
            ranges.append((low_top, ACPI_AREA_SIZE, E820_ACPI))
        if self.mem.above_4g:
            ranges.append((1 << 32, self.mem.above_4g, E820_RAM))
        return ranges

    def acpi_area(self) -> int:
        """Base of the ACPI table area of a direct Linux boot."""
        return self.mem.below_4g - ACPI_AREA_SIZE

    def enable_ide_decode(self) -> None:
        """The firmware's IDE duty for a direct Linux boot: IDETIM bit 15 (decode enable)
        on both channels (82371SB 2.3.9); ata_piix takes a channel without it as off."""
        for idetim in (IDETIM_PRIMARY, IDETIM_SECONDARY):
            self.ide.config_write(idetim, 2, self.ide.config_read(idetim, 2) | IDE_DECODE)

    def _build_acpi(self) -> acpi.AcpiTables:
        tables = acpi.build(self.acpi_area(), PM_BLOCK, self.mem.below_4g)
        if len(tables.blob) > ACPI_AREA_SIZE:
            raise BootError(f"ACPI tables of {len(tables.blob)} bytes overflow their area")
        return tables

    def _acpi_item(self) -> bytes:
        """fw_cfg ``etc/pyemu/acpi`` for pyemu's BIOS (firmware/acpi.c): the tables built
        for the top of low RAM, after their base and the RSDP's offset in them."""
        tables = self._build_acpi()
        return struct.pack("<II", tables.base, tables.rsdp - tables.base) + tables.blob

    def install_acpi(self) -> acpi.AcpiTables:
        """The firmware's ACPI duties for a direct Linux boot: decode the PM registers
        at PM_BASE (PMBA, PIIX4 3.4.1.1; PMREGMISC bit 0 enables them), and put the tables
        in RAM, with an RSDP copy at the EBDA's start where a scan finds it."""
        self.pm.config_write(piix3.PMBA, 2, PM_BASE | 1)
        self.pm.config_write(piix3.PMREGMISC, 1, 1)
        tables = self._build_acpi()
        self.mem.write(tables.base, tables.blob)
        rsdp = tables.rsdp - tables.base
        self.mem.write(EBDA_BASE, tables.blob[rsdp:rsdp + acpi.RSDP_LENGTH])
        self.mem.write(BDA_EBDA_SEGMENT, struct.pack("<H", EBDA_BASE >> 4))
        return tables

    def drive_backends(self) -> dict[str, BlockBackend]:
        """Each drive's image by drive id (``-drive id=``, else QEMU's ide0-hd0 names)."""
        return {name: drive.backend for name, _, drive in self.drives()
                if drive.backend is not None}

    def claim_images(self) -> None:
        for name, backend in self.drive_backends().items():
            if backend.active:
                continue
            try:
                backend.activate()
            except OSError as e:
                raise RunRefused(f"drive {name}: {e.strerror or e}; the guest runs where its "
                                 "images are locked (a migration's destination may hold "
                                 "them)") from None

    def isa_irq(self, n: int) -> IrqLine:
        return self.pic.irq_line(n)

    def check_snapshot_allowed(self) -> None:
        for name, backend in self.drive_backends().items():
            # A raw image cannot hold the disk as it was at the snapshot, so a later
            # loadvm would pair old RAM with newer disk contents: refuse, as QEMU does.
            # A qcow2 image (or -snapshot's qcow2 overlay) takes an internal snapshot
            # (migration/savevm.py).
            if not backend.readonly and backend.qcow2 is None:
                raise ValueError(f"drive {name} ({backend.path}) is a writable raw image, "
                                 "which cannot hold its state at the snapshot; use a qcow2 "
                                 "image or readonly=on")

    def after_load(self) -> None:
        super().after_load()
        self.cpu.set_intr(self.pic.intr_level())

    def pio_window(self, port: int, data: bytes, pos: int, end: int) -> None:
        self.cpu.pio_window(port, data, pos, end)

    def pio_window_take(self, port: int) -> int | None:
        return self.cpu.pio_window_take(port)

    def port_constant(self, port: int, value: int, until_ns: int) -> None:
        self.cpu.port_constant(port, value, until_ns)

    def tray_moved(self, drive: IdeDrive, tray_open: bool) -> None:  # type: ignore[override]
        for name, _, d in self.drives():
            if d is drive:
                self.emit("DEVICE_TRAY_MOVED", {"device": name, "id": drive.path,
                                                "tray-open": tray_open})

    def set_a20(self, source: str, enabled: bool) -> None:
        self._a20[source] = enabled
        self.cpu.set_a20(any(self._a20.values()))

    def acknowledge_interrupt(self) -> int:
        return self.pic.acknowledge()

    def boot(self) -> None:
        if self.kernel is None:
            return  # the CPU is at the reset vector; the firmware takes it from there
        self.route_pirqs()
        if self.linux is not None:
            self.enable_ide_decode()
            tables = self.install_acpi()
            booted = linux.load_linux(self.linux, self.cfg.append, self.initrd, self.cfg.initrd,
                                      self.mem, self.memory_map(), rsdp=tables.rsdp)
            self.cpu.enter_flat32(booted.entry, code_sel=linux.BOOT_CS, data_sel=linux.BOOT_DS,
                                  gdt=(linux.GDT_ADDR, len(linux.GDT) - 1), idt=REAL_MODE_IDT,
                                  rsi=booted.boot_params, rbp=0, rdi=0, rbx=0)
            return
        image = load_multiboot(self.kernel, self.cfg.append, self.cfg.initrd, self.mem,
                               self.memory_map())
        self.cpu.enter_flat32(image.entry, code_sel=multiboot.CODE_SEL,
                              data_sel=multiboot.DATA_SEL, gdt=image.gdt, idt=REAL_MODE_IDT,
                              rax=multiboot.BOOT_MAGIC, rbx=image.info_addr, rcx=image.entry,
                              rsp=image.stack, rflags=multiboot.ENTRY_EFLAGS)
