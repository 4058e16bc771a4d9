"""The machine description a command line produces (host bindings kept apart).

A migration stream carries the part of it that shapes the machine (``to_stream``), so
that a destination started with nothing but ``-incoming`` builds the same machine
(``from_stream``); so does a ``machine-export`` file given to ``-readconfig``. Image
and kernel paths travel, and the destination may re-bind drives with its own options;
chardevs travel only as ports that exist ("chardev"), never as specs: which host
resource backs a port is for the receiving side to say.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emu.cpu.models import DEFAULT_MODEL, find_model
from emu.devices.mc146818 import boot_order_nibbles, parse_rtc_base
from emu.host.block import FORMATS, MAX_INDEX, MEDIA, DriveSpec, assign_indexes
from emu.machine.pc.plug import MAX_DEVICES, parse_device
from emu.memory.address_space import MAX_RAM


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
    no_shutdown: bool = False  # -no-shutdown: the guest's power-off pauses, as in QEMU
    nodefaults: bool = False  # -nodefaults: no default serial port and monitor
    name: str = ""
    drives: list[DriveSpec] = field(default_factory=list)  # IDE index 0-3, assigned
    snapshot: bool = False  # -snapshot: every drive's writes vanish on exit
    boot_order: str = "cad"  # -boot: drive letters, a floppy c disk d cdrom n network
    rtc_base: str = "utc"  # -rtc base=: utc, localtime or a date
    loadvm: str | None = None  # -loadvm: a snapshot to start from
    incoming: str | None = None  # -incoming URI or "defer"
    allow_files: list[str] = field(default_factory=list)  # where a stream may name files
    shaped: bool = False  # an option that shapes the machine was given (not only bindings)
    cpu: str = DEFAULT_MODEL  # -cpu: the CPU model (emu/cpu/models.py)
    devices: list[str] = field(default_factory=list)  # -device specs, as given and checked
    # -chardev ID -> spec, for the devices that name one (chardev=ID): host bindings,
    # never in a description (a destination binds its own by the same id, else null)
    chardevs: dict[str, str] = field(default_factory=dict)
    readconfig: str | None = None  # -readconfig FILE: the machine comes from this file
    # the description the machine was built from (-readconfig): the built machine must
    # match it exactly
    described: dict[str, Any] | None = None


# What travels, with the type each must have on arrival (the stream is hostile input).
_SHAPE: dict[str, tuple[type, ...]] = {
    "machine": (str,), "ram_size": (int,), "kernel": (str, type(None)), "append": (str,),
    "initrd": (str, type(None)), "bios": (str, type(None)),
    "icount_shift": (int, type(None)), "no_reboot": (bool,), "snapshot": (bool,),
    "boot_order": (str,), "rtc_base": (str,), "debugcon": (str, type(None)), "cpu": (str,),
}
_DRIVE: dict[str, tuple[type, ...]] = {"id": (str,), "file": (str,), "index": (int,),
                                      "media": (str,), "readonly": (bool,),
                                      "snapshot": (bool,), "format": (str,)}
MAX_TEXT = 4096  # bytes of any string a stream's configuration gives
CHARDEV = "chardev"  # a serial port or debug console that exists, bound by the receiver

MACHINE_TYPES = ("pc", "pc-i440fx")  # -M names of the one board there is
MIN_RAM, RAM_PAGE = 2 << 20, 4096
MAX_ICOUNT_SHIFT = 10
GIB = 1 << 30


def machine_type(name: str) -> str:
    """The board a -M name selects; ValueError for one pyemu does not have."""
    if name not in MACHINE_TYPES:
        raise ValueError(f"unsupported machine type {name!r} ('-M help' lists them)")
    return "pc"


def physical_memory() -> int | None:
    """This host's physical memory in bytes; None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def host_ram_limit() -> int:
    """The most guest RAM this host can give: its physical memory less what pyemu itself
    (Python, the CPU engine's translation cache) and the rest of the host need -- an
    eighth of it, at least 512 MiB -- and no more than MAX_RAM."""
    phys = physical_memory()
    if phys is None:
        return MAX_RAM
    return max(0, min(MAX_RAM, phys - max(phys // 8, 512 << 20)))


def _gib(size: int) -> str:
    return f"{size / GIB:.3g} GiB"


def check_ram_size(size: int) -> None:
    """A RAM size (-m, or a stream's): whole pages, at least MIN_RAM, at most what this
    host can give; ValueError saying why not."""
    if size < MIN_RAM:
        raise ValueError("at least 2 MiB of RAM is needed")
    if size % RAM_PAGE:
        raise ValueError(f"{size} bytes is not a whole number of 4 KiB pages")
    if size > MAX_RAM:
        raise ValueError(f"more than {_gib(MAX_RAM)} of RAM is not supported")
    limit = host_ram_limit()
    if size > limit:
        raise ValueError(f"{_gib(size)} is more than this host's {_gib(limit)}")


def check_icount_shift(shift: Any) -> None:
    """-icount shift=N: each instruction takes 2^N ns, N an integer 0-10."""
    if type(shift) is not int or not 0 <= shift <= MAX_ICOUNT_SHIFT:
        raise ValueError(f"shift must be 0-{MAX_ICOUNT_SHIFT} or auto, not {shift!r}")


def drive_id(spec: DriveSpec) -> str:
    """The drive's id: given with ``id=``, else QEMU's ``ide<bus>-<hd|cd><unit>``."""
    return spec.id or f"ide{spec.channel}-{'cd' if spec.media == 'cdrom' else 'hd'}{spec.unit}"


def to_stream(cfg: MachineConfig) -> dict[str, Any]:
    """The configuration that builds this machine again, for a migration stream; file
    paths absolute (the destination has another working directory, and grants files by
    directory)."""
    out: dict[str, Any] = {key: getattr(cfg, key) for key in _SHAPE}
    out["kernel"] = cfg.kernel and os.path.abspath(cfg.kernel)
    out["initrd"] = cfg.initrd and _absolute_initrd(cfg.initrd)
    # a bare -bios name that is no file here means pyemu's own firmware of that name
    out["bios"] = cfg.bios and (os.path.abspath(cfg.bios) if os.path.exists(cfg.bios)
                                else cfg.bios)
    out["serial"] = [s if s == "none" else CHARDEV for s in cfg.serial]
    out["debugcon"] = cfg.debugcon and CHARDEV
    out["devices"] = list(cfg.devices)
    out["drives"] = [{"id": drive_id(d), "file": d.file and os.path.abspath(d.file),
                      "index": d.index, "media": d.media, "readonly": d.readonly,
                      "snapshot": d.snapshot, "format": d.format or "raw"} for d in cfg.drives]
    return out


def _absolute_initrd(spec: str) -> str:
    """A Linux initrd (one file) or Multiboot modules ("mod1 args,mod2") with each
    file's path made absolute, the rest of each module's line as it was."""
    from emu.machine.pc.multiboot import module_list

    if os.path.isfile(spec):
        return os.path.abspath(spec)
    return ",".join((os.path.abspath(path) + line[len(path):]).replace(",", ",,")
                    for path, line in module_list(spec))


def _checked(where: str, mapping: Any, types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: not a mapping")
    out = {}
    for key, allowed in types.items():
        value = mapping.get(key)
        # bool is an int in Python: keep the two apart
        if type(value) not in allowed:
            raise ValueError(f"{where}/{key}: {value!r} is not a {allowed[0].__name__}")
        if isinstance(value, str) and not _usable(value):
            raise ValueError(f"{where}/{key}: not a usable string")
        out[key] = value
    return out


def _usable(text: str) -> bool:
    """Text a host call or a guest can take: UTF-8 (JSON lets lone surrogates through),
    no NUL, at most MAX_TEXT bytes."""
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        return False
    return len(raw) <= MAX_TEXT and b"\0" not in raw


# The rules of the command line's own options, for the values a stream gives them.
_VALUE_CHECKS: dict[str, Callable[[Any], object]] = {
    "machine": machine_type, "ram_size": check_ram_size, "boot_order": boot_order_nibbles,
    "rtc_base": parse_rtc_base, "icount_shift": check_icount_shift, "cpu": find_model,
}


def _check_values(cfg: MachineConfig) -> None:
    """ValueError naming the first field of ``cfg`` that its option would refuse."""
    for key, check in _VALUE_CHECKS.items():
        value = getattr(cfg, key)
        if value is None:  # an optional setting left out (icount_shift)
            continue
        try:
            check(value)
        except ValueError as e:
            raise ValueError(f"description/config/{key}: {e}") from None


def from_stream(desc: Any, local: MachineConfig) -> MachineConfig:
    """The machine a stream's configuration describes, with the host bindings ``local``
    (the destination's own command line) gives: its -serial and -debugcon in order, and
    ``-drive id=ID,file=PATH`` for the drive of that id. ValueError names a bad field."""
    shape = _checked("description/config", desc, _SHAPE)
    cfg = MachineConfig(**shape, monitor=local.monitor, nographic=local.nographic,
                        start_paused=local.start_paused, name=local.name,
                        incoming=local.incoming, no_shutdown=local.no_shutdown,
                        nodefaults=local.nodefaults, loadvm=local.loadvm,
                        allow_files=local.allow_files, chardevs=local.chardevs)
    _check_values(cfg)
    serial = desc.get("serial")
    if not isinstance(serial, list) or len(serial) > 4 or \
            not all(isinstance(s, str) for s in serial):
        raise ValueError("description/config/serial: not a list of up to 4 ports")
    cfg.serial = [s if s == "none" else (local.serial[i] if i < len(local.serial) else "null")
                  for i, s in enumerate(serial)]
    if cfg.debugcon is not None:
        cfg.debugcon = local.debugcon or "null"
    devices = desc.get("devices")
    if not isinstance(devices, list) or len(devices) > MAX_DEVICES or \
            not all(isinstance(d, str) and _usable(d) for d in devices):
        raise ValueError(f"description/config/devices: not a list of up to {MAX_DEVICES} "
                         "-device specs")
    for i, spec in enumerate(devices):
        try:
            parse_device(spec)
        except ValueError as e:
            raise ValueError(f"description/config/devices[{i}]: {e}") from None
    cfg.devices = devices
    rebind = {d.id: d.file for d in local.drives if d.id}
    drives = desc.get("drives")
    if not isinstance(drives, list) or len(drives) > MAX_INDEX + 1:
        raise ValueError("description/config/drives: not a list of up to 4 drives")
    ids: set[str] = set()
    for i, d in enumerate(drives):
        d = _checked(f"description/config/drives[{i}]", d, _DRIVE)
        if not 0 <= d["index"] <= MAX_INDEX or d["media"] not in MEDIA:
            raise ValueError(f"description/config/drives[{i}]: index or media out of range")
        if d["format"] not in FORMATS:
            raise ValueError(f"description/config/drives[{i}]/format: {d['format']!r} is not "
                             f"one of {', '.join(FORMATS)}")
        if not d["file"] and d["media"] != "cdrom":
            raise ValueError(f"description/config/drives[{i}]/file: empty, and only a "
                             "cdrom drive can be without a medium")
        if not d["id"] or not d["id"].isprintable() or d["id"] in ids:  # in messages
            raise ValueError(f"description/config/drives[{i}]/id: {d['id']!r} is not "
                             "a name of its own")
        ids.add(d["id"])
        cfg.drives.append(DriveSpec(file=rebind.pop(d["id"], d["file"]), index=d["index"],
                                    media=d["media"], readonly=d["readonly"],
                                    snapshot=d["snapshot"], id=d["id"], format=d["format"]))
    try:
        assign_indexes(cfg.drives)  # the command line's check: one drive per index
    except ValueError as e:
        raise ValueError(f"description/config/drives: {e}") from None
    if rebind:
        raise ValueError(f"-drive id={next(iter(rebind))}: no drive of that id in the stream")
    return cfg


def parse_size(text: str) -> int:
    """QEMU's -m: a number of MiB, or with a K/M/G/T suffix (``size=`` prefix allowed)."""
    text = text.removeprefix("size=")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)[bB]?", text.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(text)
    unit = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[
        m.group(2).upper()]
    return int(float(m.group(1)) * unit)
