"""The ``info`` commands that show the machine, run against a real PcMachine."""

from __future__ import annotations

import re
import threading

from emu.host.block import DriveSpec
from emu.host.chardev import BufferChardev, MuxChardev, NullChardev
from emu.monitor.hmp import HumanMonitor


def pci_config_write(m, devfn: int, offset: int, size: int, value: int) -> None:
    """A guest's configuration write through mechanism #1 (0xCF8/0xCFC)."""
    m.io.write(0xCF8, 4, 0x80000000 | devfn << 8 | (offset & 0xFC))
    m.io.write(0xCFC + (offset & 3), size, value)


def test_info_name(make_machine, run):
    assert run(make_machine(name="guest-7"), "info name") == "guest-7"
    assert run(make_machine(), "info name") == ""


def test_info_cpus_names_the_thread_running_commands(machine, run):
    assert run(machine, "info cpus") == f"* CPU #0: thread_id={threading.get_native_id()}"


def test_info_qtree_nests_objects_with_their_props(machine, run):
    lines = run(machine, "info qtree").splitlines()
    assert lines[0] == 'dev: pc, id "machine"'
    pic = lines.index('  dev: isa-pic, id "pic"')
    assert lines[pic + 1] == '    dev: i8259, id "master"'
    assert "      iobase = 32 (0x20)" in lines[pic + 2:pic + 6]
    assert "      master = true" in lines[pic + 2:pic + 6]
    assert '    base = "2020-01-01T00:00:00"' in lines  # the RTC's str prop


def test_info_mtree_follows_the_pam_registers(machine, run):
    before = run(machine, "info mtree")
    assert "  0000000000000000-000000000009ffff (ram): ram-low" in before
    assert "  0000000000100000-0000000007ffffff (ram): ram" in before
    assert "  00000000ffff0000-00000000ffffffff (rom): bios" in before
    assert "  00000000000f0000-00000000000fffff (rom): pam@0xf0000 [PAM off]" in before
    assert "unassigned" not in before
    pci_config_write(machine, 0, 0x59, 1, 0x30)  # PAM0: 0xF0000 segment read/write RAM
    after = run(machine, "info mtree")
    assert "  00000000000f0000-00000000000fffff (ram): pam@0xf0000 [PAM read/write]" in after
    pci_config_write(machine, 0, 0x59, 1, 0x20)  # writes to RAM, reads from ROM
    assert "(i/o): pam@0xf0000 [PAM write]" in run(machine, "info mtree")


def test_info_mtree_lists_the_io_ports_by_owner(machine, run):
    io = run(machine, "info mtree").split("address-space: I/O\n")[1].splitlines()
    assert "  0000000000000020-0000000000000021 (i/o): /machine/pic/master" in io
    assert "  00000000000000a0-00000000000000a1 (i/o): /machine/pic/slave" in io
    assert "  0000000000000cf8-0000000000000cff (i/o): /machine/pci" in io
    assert not any("/machine/ide (" in line for line in io)
    pci_config_write(machine, 9, 0x20, 4, 0xC000)  # IDE BAR4, then I/O decode on
    pci_config_write(machine, 9, 0x04, 2, 1)
    io = run(machine, "info mtree").split("address-space: I/O\n")[1].splitlines()
    assert "  000000000000c000-000000000000c00f (i/o): /machine/ide/bar4" in io


def test_info_pci_shows_functions_and_bars_as_qemu(machine, run):
    out = run(machine, "info pci")
    assert "  Bus  0, device   0, function 0:\n    Host bridge: PCI device 8086:1237" in out
    assert "  Bus  0, device   1, function 0:\n    ISA bridge: PCI device 8086:7000" in out
    assert "  Bus  0, device   1, function 3:\n    Bridge: PCI device 8086:7113\n" \
           "      IRQ 9, pin A" in out
    assert "      BAR4: I/O (not decoded), 16 bytes." in out
    pci_config_write(machine, 9, 0x20, 4, 0xC000)
    pci_config_write(machine, 9, 0x04, 2, 1)
    out = run(machine, "info pci")
    assert "  Bus  0, device   1, function 1:\n    IDE controller: PCI device 8086:7010\n" \
           "      BAR4: I/O at 0xc000 [0xc00f]." in out


def test_info_pic_shows_both_chips(machine, run):
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01),
                        (0x21, 0xFA), (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02),
                        (0xA1, 0x01), (0xA1, 0xFF), (0x4D1, 0x0C), (0x20, 0x0B)):
        machine.io.write(port, 1, value)
    machine.isa_irq(1).raise_()
    machine.isa_irq(0).raise_()
    assert run(machine, "info pic").splitlines() == [
        "pic0: irr=03 imr=fa isr=00 hprio=0 irq_base=20 rr_sel=1 elcr=00 fnm=0",
        "pic1: irr=00 imr=ff isr=00 hprio=0 irq_base=28 rr_sel=0 elcr=0c fnm=0",
    ]
    assert machine.acknowledge_interrupt() == 0x20  # IRQ0 outranks IRQ1
    assert run(machine, "info pic").splitlines()[0].startswith("pic0: irr=02 imr=fa isr=01")


def test_info_irq_counts_rising_inputs_as_qemu(machine, run):
    # QEMU counts each rising input (i8259_common.c), masked or not, acknowledged or
    # not; the slave's INT rising counts on IRQ2 as well
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFF),
                        (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, 0x01), (0xA1, 0)):
        machine.io.write(port, 1, value)
    for _ in range(3):
        machine.isa_irq(4).pulse()
    machine.isa_irq(12).pulse()
    assert run(machine, "info irq").splitlines() == [
        "IRQ statistics for isa-i8259:", " 2: 1", " 4: 3", "12: 1"]


def test_info_block(tmp_path, make_machine, run):
    disk, iso = tmp_path / "disk.img", tmp_path / "cd.iso"
    disk.write_bytes(bytes(1 << 20))
    iso.write_bytes(bytes(1 << 20))
    specs = [DriveSpec(str(disk), index=0), DriveSpec(str(disk), index=1, readonly=True),
             DriveSpec(str(iso), index=2, media="cdrom", readonly=True, id="cd")]
    blocks = {0: specs[0].open(snapshot=True), 1: specs[1].open(lock=False),
              2: specs[2].open()}
    try:
        m = make_machine(drives=specs, blocks=blocks, snapshot=True)
        assert run(m, "info block").split("\n\n") == [
            f"ide0-hd0: {disk} (raw)\n"
            "    Attached to:      /machine/ide/ide0/master\n"
            "    Cache mode:       writeback\n"
            "    Snapshot:         writes kept in a temporary overlay, dropped at exit",
            f"ide0-hd1: {disk} (raw, read-only)\n"
            "    Attached to:      /machine/ide/ide0/slave\n"
            "    Cache mode:       writeback",
            f"cd: {iso} (raw, read-only)\n"
            "    Attached to:      /machine/ide/ide1/master\n"
            "    Removable device: not locked, tray closed\n"
            "    Cache mode:       writeback",
        ]
    finally:
        for b in blocks.values():
            b.close()


def test_info_block_without_drives_is_empty(machine, run):
    assert run(machine, "info block") == ""


def test_info_chardev_lists_serial_debugcon_and_monitors(make_machine, run):
    serial = MuxChardev(BufferChardev("stdio"), monitor=True, spec="mon:stdio")
    m = make_machine(chardevs={"serial0": serial.frontend(0), "serial1": NullChardev("null"),
                               "debugcon": BufferChardev("file:debug.txt")})
    m.add_input_source(serial)
    HumanMonitor(m, serial.frontend(1), echo=True)
    socket_monitor = BufferChardev("unix:/tmp/mon.sock,server,nowait")
    m.add_input_source(socket_monitor)
    HumanMonitor(m, socket_monitor, echo=False)
    assert run(m, "info chardev").splitlines() == [
        "serial0: filename=mon:stdio",
        "serial1: filename=null",
        "debugcon: filename=file:debug.txt",
        "compat_monitor0: filename=mon:stdio",
        "compat_monitor1: filename=unix:/tmp/mon.sock,server,nowait",
    ]


def test_info_history_is_the_sessions_own(machine):
    chardevs = [BufferChardev(), BufferChardev()]
    first, second = (HumanMonitor(machine, cd, echo=False) for cd in chardevs)
    first.receive(b"info name\r\ninfo status\r\n")
    second.receive(b"info version\n")
    chardevs[0].take_output()
    first.receive(b"info history\r\n")
    out = chardevs[0].take_output().decode().replace("\r\n", "\n")
    assert out == "0: 'info name'\n1: 'info status'\n2: 'info history'\n(pyemu) "
    assert first.history == ("info name", "info status", "info history")
    second.receive(b"info history\n")
    assert re.search(r"0: 'info version'\n1: 'info history'\n",
                     chardevs[1].take_output().decode().replace("\r\n", "\n"))


def test_info_history_outside_a_session_is_empty(machine, run):
    assert run(machine, "info history") == ""


# -- info registers / info tlb / info mem ---------------------------------------------------

# QEMU 7.2 at reset (qemu-system-x86_64 -S -nodefaults, "info registers").
QEMU_RESET_LINES = [
    "",
    "CPU#0",
    "EAX=00000000 EBX=00000000 ECX=00000000 EDX=00060fb1",
    "ESI=00000000 EDI=00000000 EBP=00000000 ESP=00000000",
    "EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0",
    "ES =0000 00000000 0000ffff 00009300",
    "CS =f000 ffff0000 0000ffff 00009b00",
    "SS =0000 00000000 0000ffff 00009300",
    "DS =0000 00000000 0000ffff 00009300",
    "FS =0000 00000000 0000ffff 00009300",
    "GS =0000 00000000 0000ffff 00009300",
    "LDT=0000 00000000 0000ffff 00008200",
    "TR =0000 00000000 0000ffff 00008b00",
    "GDT=     00000000 0000ffff",
    "IDT=     00000000 0000ffff",
    "CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000",
]
QEMU_RESET_TAIL = [
    "DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000 ",
    "DR6=00000000ffff0ff0 DR7=0000000000000400",
    "EFER=0000000000000000",
]
QEMU_RESET_FPU = [
    "FPR0=0000000000000000 0000 FPR1=0000000000000000 0000",
    "XMM06=0000000000000000 0000000000000000 XMM07=0000000000000000 0000000000000000",
]

CR0_PE, CR0_PG, CR4_PSE, CR4_PAE, EFER_LME = 1, 1 << 31, 1 << 4, 1 << 5, 1 << 8
P, W, U, PS, A, D, G = 1, 2, 4, 1 << 7, 1 << 5, 1 << 6, 1 << 8
NX = 1 << 63


def test_info_registers_at_reset_as_qemu(machine, run):
    machine.cpu.reset()
    lines = run(machine, "info registers").split("\n")
    assert lines[:16] == QEMU_RESET_LINES
    assert lines[16:19] == QEMU_RESET_TAIL
    assert lines[19] == "FCW=037f FSW=0000 [ST=0] FTW=00 MXCSR=00001f80"
    assert lines[20] == QEMU_RESET_FPU[0] and lines[-1] == QEMU_RESET_FPU[1]
    assert len(lines) == 28  # 32-bit form: 8 XMM registers


def test_info_registers_decodes_protected_mode_caches(machine, run):
    # the Multiboot entry state; QEMU prints it the same for the same kernel
    lines = run(machine, "info registers").split("\n")
    assert "CS =0008 00000000 ffffffff 00cf9a00 DPL=0 CS32 [-R-]" in lines
    assert "SS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]" in lines
    assert "TR =0000 00000000 0000ffff 00008b00 DPL=0 TSS32-busy" in lines  # as at reset
    assert any(line.startswith("GDT=     ") and len(line) == 26 for line in lines)


def _long_mode(machine, cr3: int) -> None:
    """64-bit code with 4-level paging: CS.L, CR4.PAE, EFER.LME/LMA, CR0.PG."""
    import ctypes

    import unicorn.x86_const as x

    from emu.cpu.helper import UCLIB
    from emu.cpu.x86 import UPDATE_HFLAGS

    cpu = machine.cpu
    cpu.uc.reg_write(x.UC_X86_REG_CR4, CR4_PAE)
    cpu.uc.reg_write(x.UC_X86_REG_CR3, cr3)
    cpu.uc.msr_write(0xC0000080, EFER_LME)
    cpu.uc.reg_write(x.UC_X86_REG_CR0, CR0_PE | CR0_PG | 0x10)
    cpu.segment("cs").flags = 0x00AF9B00  # L=1, D=0
    UPDATE_HFLAGS(ctypes.cast(UCLIB.x86_update_hflags_x86_64, ctypes.c_void_p).value)(
        cpu.helper.layout.env)
    cpu.uc.reg_write(x.UC_X86_REG_RAX, 0x1122334455667788)


def _entries(machine, table: int, entries: dict[int, int], width: int = 8) -> None:
    for index, value in entries.items():
        machine.mem.write(table + index * width, value.to_bytes(width, "little"))


def test_long_mode_registers_tlb_and_mem(machine, run):
    pml4, pdpt, pd, pt = 0x200000, 0x201000, 0x202000, 0x203000
    _entries(machine, pml4, {0: pdpt | P | W | U, 511: pdpt | P | W})
    _entries(machine, pdpt, {0: pd | P | W | U, 1: 0x40000000 | P | W | PS})
    _entries(machine, pd, {0: pt | P | W | U, 1: 0x400000 | P | PS | A | D | G})
    _entries(machine, pt, {0: 0x5000 | P | U | A, 1: 0x6000 | P | W | U | NX, 3: 0x7000 | P})
    _long_mode(machine, pml4)
    lines = run(machine, "info registers").split("\n")
    assert lines[2].startswith("RAX=1122334455667788 RBX=") and len(lines[2]) == 83
    assert lines[4].startswith("R8 =0000000000000000 R9 =")
    assert lines[6].startswith("RIP=") and " RFL=" in lines[6]
    assert "CS =0008 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]" in lines
    assert "SS =0010 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]" in lines
    assert any(line.startswith("CR0=80000011 CR2=0000000000000000 CR3=0000000000200000 ")
               for line in lines)
    assert "EFER=0000000000000500" in lines  # LME and LMA
    assert sum(line.startswith("XMM") for line in lines) == 8  # 16 registers, two a line
    # target/i386/monitor.c's print_pte and mem_print, sign-extended from bit 47
    assert run(machine, "info tlb").split("\n") == [
        "0000000000000000: 0000000000005000 ----A--U-",
        "0000000000001000: 0000000000006000 X------UW",
        "0000000000003000: 0000000000007000 ---------",
        "0000000000200000: 0000000000400000 -GPDA----",
        "0000000040000000: 0000000040000000 --P-----W",
        "ffffff8000000000: 0000000000005000 ----A--U-",
        "ffffff8000001000: 0000000000006000 X------UW",
        "ffffff8000003000: 0000000000007000 ---------",
        "ffffff8000200000: 0000000000400000 -GPDA----",
        "ffffff8040000000: 0000000040000000 --P-----W",
    ]
    assert run(machine, "info mem").split("\n") == [
        "0000000000000000-0000000000001000 0000000000001000 ur-",
        "0000000000001000-0000000000002000 0000000000001000 urw",
        "0000000000003000-0000000000004000 0000000000001000 -r-",
        "0000000000200000-0000000000400000 0000000000200000 -r-",
        "0000000040000000-0000000080000000 0000000040000000 -rw",
        "ffffff8000000000-ffffff8000001000 0000000000001000 -r-",
        "ffffff8000001000-ffffff8000002000 0000000000001000 -rw",
        "ffffff8000003000-ffffff8000004000 0000000000001000 -r-",
        "ffffff8000200000-ffffff8000400000 0000000000200000 -r-",
        "ffffff8040000000-ffffff8080000000 0000000040000000 -rw",
    ]


def _paging32(machine, cr3: int, cr4: int) -> None:
    import unicorn.x86_const as x

    machine.cpu.uc.reg_write(x.UC_X86_REG_CR4, cr4)
    machine.cpu.uc.reg_write(x.UC_X86_REG_CR3, cr3)
    machine.cpu.uc.reg_write(x.UC_X86_REG_CR0, CR0_PE | CR0_PG | 0x10)


def test_info_tlb_and_mem_with_32_bit_paging(machine, run):
    assert run(machine, "info tlb") == "PG disabled"
    assert run(machine, "info mem") == "PG disabled"
    pd, pt = 0x200000, 0x201000
    _entries(machine, pd, {0: pt | P | W | U, 1: 0x800000 | P | W | PS, 0x300: pt | P | W}, 4)
    _entries(machine, pt, {0: 0x1000 | P | W | U, 1: 0x2000 | P | U, 2: 0x3000 | P | W | U}, 4)
    _paging32(machine, pd, CR4_PSE)
    assert run(machine, "info tlb").split("\n") == [
        "0000000000000000: 0000000000001000 -------UW",
        "0000000000001000: 0000000000002000 -------U-",
        "0000000000002000: 0000000000003000 -------UW",
        "0000000000400000: 0000000000800000 --P-----W",
        "00000000c0000000: 0000000000001000 -------UW",
        "00000000c0001000: 0000000000002000 -------U-",
        "00000000c0002000: 0000000000003000 -------UW",
    ]
    assert run(machine, "info mem").split("\n") == [
        "0000000000000000-0000000000001000 0000000000001000 urw",
        "0000000000001000-0000000000002000 0000000000001000 ur-",
        "0000000000002000-0000000000003000 0000000000001000 urw",
        "0000000000400000-0000000000800000 0000000000400000 -rw",
        "00000000c0000000-00000000c0001000 0000000000001000 -rw",
        "00000000c0001000-00000000c0002000 0000000000001000 -r-",
        "00000000c0002000-00000000c0003000 0000000000001000 -rw",
    ]


def test_info_tlb_and_mem_with_pae(machine, run):
    pdpt, pd, pt = 0x200000, 0x201000, 0x202000
    _entries(machine, pdpt, {0: pd | P, 3: pd | P})
    _entries(machine, pd, {0: pt | P | W, 2: 0x600000 | P | W | PS})
    _entries(machine, pt, {5: 0x9000 | P | W | NX})
    _paging32(machine, pdpt, CR4_PAE)
    assert run(machine, "info tlb").split("\n") == [
        "0000000000005000: 8000000000009000 X-------W",  # QEMU keeps NX in the address here
        "0000000000400000: 0000000000600000 --P-----W",
        "00000000c0005000: 8000000000009000 X-------W",
        "00000000c0400000: 0000000000600000 --P-----W",
    ]
    assert run(machine, "info mem").split("\n") == [
        "0000000000005000-0000000000006000 0000000000001000 -rw",
        "0000000000400000-0000000000600000 0000000000200000 -rw",
        "00000000c0005000-00000000c0006000 0000000000001000 -rw",
        "00000000c0400000-00000000c0600000 0000000000200000 -rw",
    ]
