"""Run-time changes to the pc board (machine/pc/hotplug.py), driven in-process: the
card's life from device_add to the guest's eject, as the ACPI registers show it, and
every refusal in QEMU's words."""

from __future__ import annotations

import pytest

from emu.machine.pc import hotplug
from emu.machine.pc.hotplug import HotplugError


@pytest.fixture
def pc(machine):
    m = machine()
    assert hotplug.chardev_add(m, "null,id=c1") == "c1"
    m.events = []
    m.listeners.append(lambda event, data: m.events.append((event, data)))
    return m


def refused(fn) -> str:
    with pytest.raises(HotplugError) as e:
        fn()
    return str(e.value)


def test_a_card_from_device_add_to_the_guests_eject(pc):
    card = hotplug.device_add(pc, "pci-serial,id=ps0,chardev=c1")
    assert card.path == "/machine/ps0" and card.devfn == 2 << 3  # first free slot
    assert pc.cfg.devices[-1] == "pci-serial,id=ps0,addr=0x2.0,chardev=c1"
    assert pc.io.read(0xAE00, 4) == 1 << 2                       # PCIU: slot 2
    assert pc.io.read(0xAFE0, 1) & 2                             # GPE 1
    pc.io.write(0xCF8, 4, 0x80000000 | 2 << 11)
    assert pc.io.read(0xCFC, 4) == 0x00021B36                    # on bus 0
    hotplug.device_del(pc, "ps0")
    assert pc.io.read(0xAE04, 4) == 1 << 2 and "ps0" in pc.children  # asked, not gone
    pc.io.write(0xAE08, 4, 1 << 2)                               # the guest's _EJ0
    assert "ps0" not in pc.children and pc.cfg.devices[-1:] != ["pci-serial,id=ps0,"
                                                                 "addr=0x2.0,chardev=c1"]
    assert pc.events == [("DEVICE_DELETED", {"device": "ps0", "path": "/machine/ps0"})]
    pc.io.write(0xCF8, 4, 0x80000000 | 2 << 11)
    assert pc.io.read(0xCFC, 4) == 0xFFFFFFFF                    # the slot is empty
    hotplug.chardev_remove(pc, "c1")                             # free again: removable
    assert "c1" not in pc.chardevs


def test_slots_ids_and_chardevs_are_checked(pc):
    hotplug.device_add(pc, "pci-serial,id=ps0,addr=5,chardev=c1")
    assert refused(lambda: hotplug.device_add(pc, "pci-serial,id=ps0")) == \
        "Duplicate device ID 'ps0'"
    assert refused(lambda: hotplug.device_add(pc, "pci-serial,addr=5")) == \
        "pci-serial: PCI slot 0x5 function 0 is in use"
    assert refused(lambda: hotplug.device_add(pc, "pci-serial,chardev=c1")) == \
        "Property 'pci-serial.chardev' can't take value 'c1', it's in use"
    assert refused(lambda: hotplug.device_add(pc, "pci-serial,chardev=c9")) == \
        "Property 'pci-serial.chardev' can't find value 'c9'"
    assert refused(lambda: hotplug.device_add(pc, "isa-debug-exit")) == \
        "Bus 'isa.0' does not support hotplugging (isa-debug-exit)"
    assert refused(lambda: hotplug.device_add(pc, "pci-serial,id=pic")) == \
        "Duplicate device ID 'pic'"  # a board object's name is taken too
    assert refused(lambda: hotplug.device_del(pc, "pic")) == \
        "Device 'pic' does not support hotplugging"
    assert refused(lambda: hotplug.device_del(pc, "nope")) == "Device 'nope' not found"
    assert refused(lambda: hotplug.chardev_remove(pc, "c1")) == "Chardev 'c1' is busy"
    assert refused(lambda: hotplug.chardev_add(pc, "null,id=c1")) == \
        "attempt to add duplicate property 'c1' to object (type 'container')"
    assert refused(lambda: hotplug.chardev_add(pc, "pty,id=c2")).startswith(
        "chardev-add pty,id=c2: no chardev backend 'pty' here")
    second = hotplug.device_add(pc, "pci-serial")                # no id: a numbered name
    assert second.name == "pci-serial" and second.devfn == 2 << 3


def test_every_slot_taken_is_refused(pc):
    for _ in range(16):
        hotplug.device_add(pc, "pci-serial")
    assert refused(lambda: hotplug.device_add(pc, "pci-serial")) == \
        "pyemu plugs at most 16 devices"


def test_no_change_while_a_migration_runs(pc):
    class Job:
        status = "active"
    hotplug.device_add(pc, "pci-serial,id=ps0")
    pc.migration.job = Job()
    assert refused(lambda: hotplug.device_add(pc, "pci-serial")) == \
        "device_add not allowed while migrating"
    assert refused(lambda: hotplug.device_del(pc, "ps0")) == \
        "device_del not allowed while migrating"
