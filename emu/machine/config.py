"""The machine description a command line produces (host bindings kept apart).

A migration stream carries the part of it that shapes the machine (``to_stream``), so
that a destination started with nothing but ``-incoming`` builds the same machine
(``from_stream``). Host bindings travel too -- image and kernel paths, chardev specs --
and the destination may re-bind them with its own options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emu.host.block import MAX_INDEX, MEDIA, DriveSpec


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
    incoming: str | None = None  # -incoming URI or "defer"
    shaped: bool = False  # an option that shapes the machine was given (not only bindings)


# What travels, with the type each must have on arrival (the stream is hostile input).
_SHAPE: dict[str, tuple[type, ...]] = {
    "machine": (str,), "ram_size": (int,), "kernel": (str, type(None)), "append": (str,),
    "initrd": (str, type(None)), "bios": (str, type(None)),
    "icount_shift": (int, type(None)), "no_reboot": (bool,), "snapshot": (bool,),
    "boot_order": (str,), "rtc_base": (str,), "debugcon": (str, type(None)),
}
_DRIVE: dict[str, tuple[type, ...]] = {"id": (str,), "file": (str,), "index": (int,),
                                      "media": (str,), "readonly": (bool,),
                                      "snapshot": (bool,)}
MAX_TEXT = 4096


def drive_id(spec: DriveSpec) -> str:
    """The drive's id: given with ``id=``, else QEMU's ``ide<bus>-<hd|cd><unit>``."""
    return spec.id or f"ide{spec.channel}-{'cd' if spec.media == 'cdrom' else 'hd'}{spec.unit}"


def to_stream(cfg: MachineConfig) -> dict[str, Any]:
    """The configuration that builds this machine again, for a migration stream."""
    out: dict[str, Any] = {key: getattr(cfg, key) for key in _SHAPE}
    out["serial"] = list(cfg.serial)
    out["drives"] = [{"id": drive_id(d), "file": d.file, "index": d.index, "media": d.media,
                      "readonly": d.readonly, "snapshot": d.snapshot} for d in cfg.drives]
    return out


def _checked(where: str, mapping: Any, types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: not a mapping")
    out = {}
    for key, allowed in types.items():
        value = mapping.get(key)
        # bool is an int in Python: keep the two apart
        if type(value) not in allowed:
            raise ValueError(f"{where}/{key}: {value!r} is not a {allowed[0].__name__}")
        if isinstance(value, str) and (len(value) > MAX_TEXT or "\0" in value):
            raise ValueError(f"{where}/{key}: not a usable string")
        out[key] = value
    return out


def from_stream(desc: Any, local: MachineConfig) -> MachineConfig:
    """The machine a stream's configuration describes, with the host bindings ``local``
    (the destination's own command line) gives: its -serial and -debugcon in order, and
    ``-drive id=ID,file=PATH`` for the drive of that id. ValueError names a bad field."""
    shape = _checked("description/config", desc, _SHAPE)
    cfg = MachineConfig(**shape, monitor=local.monitor, nographic=local.nographic,
                        start_paused=local.start_paused, name=local.name,
                        incoming=local.incoming)
    if not 0 < cfg.ram_size <= 64 << 30 or not (cfg.icount_shift is None or
                                                 0 <= cfg.icount_shift <= 10):
        raise ValueError("description/config: RAM size or icount shift out of range")
    serial = desc.get("serial")
    if not isinstance(serial, list) or len(serial) > 4 or \
            not all(isinstance(s, str) for s in serial):
        raise ValueError("description/config/serial: not a list of up to 4 ports")
    cfg.serial = [s if s == "none" else (local.serial[i] if i < len(local.serial) else "null")
                  for i, s in enumerate(serial)]
    if cfg.debugcon is not None:
        cfg.debugcon = local.debugcon or "null"
    rebind = {d.id: d.file for d in local.drives if d.id}
    drives = desc.get("drives")
    if not isinstance(drives, list) or len(drives) > MAX_INDEX + 1:
        raise ValueError("description/config/drives: not a list of up to 4 drives")
    for i, d in enumerate(drives):
        d = _checked(f"description/config/drives[{i}]", d, _DRIVE)
        if not 0 <= d["index"] <= MAX_INDEX or d["media"] not in MEDIA:
            raise ValueError(f"description/config/drives[{i}]: index or media out of range")
        cfg.drives.append(DriveSpec(file=rebind.pop(d["id"], d["file"]), index=d["index"],
                                    media=d["media"], readonly=d["readonly"],
                                    snapshot=d["snapshot"], id=d["id"]))
    if rebind:
        raise ValueError(f"-drive id={next(iter(rebind))}: no drive of that id in the stream")
    return cfg
