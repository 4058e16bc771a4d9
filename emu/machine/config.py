"""The machine description a command line produces (host bindings kept apart)."""

from __future__ import annotations

from dataclasses import dataclass, field

from emu.host.block import DriveSpec


@dataclass
class MachineConfig:
    machine: str = "pc"
    ram_size: int = 128 << 20
    kernel: str | None = None
    append: str = ""
    initrd: str | None = None
    bios: str | None = None
    serial: list[str] = field(default_factory=list)  # chardev specs for COM1..COM4
    monitor: list[str] = field(default_factory=list)
    debugcon: str | None = None
    nographic: bool = False
    start_paused: bool = False
    icount_shift: int | None = None
    no_reboot: bool = False
    name: str = ""
    drives: list[DriveSpec] = field(default_factory=list)  # IDE index 0-3, assigned
    snapshot: bool = False  # -snapshot: every drive's writes vanish on exit
    boot_order: str = "cad"  # -boot: drive letters, a floppy c disk d cdrom n network
    rtc_base: str = "utc"  # -rtc base=: utc, localtime or a date
    loadvm: str | None = None  # -loadvm: a snapshot to start from
