"""The machine description a command line produces (host bindings kept apart)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
