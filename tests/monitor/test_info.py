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


def test_info_irq(machine, run, error):
    pic = machine.pic
    if not hasattr(pic, "irq_counts"):  # the PIC pair does not count deliveries (yet)
        assert error(machine, "info irq") == \
            "info irq: this interrupt controller keeps no statistics"
        return
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0)):
        machine.io.write(port, 1, value)
    for _ in range(3):
        machine.isa_irq(4).pulse()
        machine.acknowledge_interrupt()
        machine.io.write(0x20, 1, 0x20)
    assert " 4: 3" in run(machine, "info irq").splitlines()


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
