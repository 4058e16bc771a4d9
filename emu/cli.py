"""QEMU-style command line: ``pyemu -M pc -m 128 -kernel k.elf -serial stdio ...``.

Options are spelled as QEMU spells them (one dash, argument in the next word). An
unknown or malformed option is a one-line error naming it, and exit status 1; so is a
QEMU option for something pyemu does not have (KVM, more CPUs, VGA, network devices),
saying what is missing. Nothing is built until the whole command line has been checked.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from emu import __version__
from emu.cpu.models import KVM_ONLY, find_model, models_help
from emu.devices.mc146818 import boot_order_nibbles, parse_rtc_base
from emu.host.block import DriveSpec, assign_indexes, drive_for_option, parse_drive
from emu.host.chardev import chardev_option
from emu.host.tls import PARAMETERS as TLS_PARAMETERS
from emu.host.tls import Credentials, parse_object
from emu.machine.config import (
    MachineConfig,
    check_icount_shift,
    check_ram_size,
    from_stream,
    machine_type,
    parse_size,
)
from emu.machine.pc.plug import devices_help, parse_device

USAGE = """\
usage: pyemu [options]

  -M pc[,accel=tcg]     machine type (only 'pc'; '-M help' lists machines)
  -m SIZE               RAM size in MiB, or with a suffix: 512M, 1G (default 128M)
  -cpu MODEL            CPU model: qemu64 (default) or max ('-cpu help' lists them)
  -accel tcg            the accelerator: TCG is the only one (no KVM here)
  -smp 1                one CPU (pyemu has no more)
  -device isa-debug-exit[,iobase=0x501][,iosize=0x02][,id=ID]
                        a guest's write of V to iobase ends pyemu with status
                        (V << 1) | 1 ('-device help' lists devices)
  -kernel FILE          boot a Linux bzImage or a Multiboot ELF kernel (with no -kernel,
                        -bios or drive: the bundled demo guest's disk image, read-only,
                        booted through pyemu's BIOS)
  -append STRING        kernel command line
  -initrd FILES         Linux: the initrd; Multiboot: modules "file1 args,file2"
  -bios FILE            firmware image mapped below 4 GiB (e.g. SeaBIOS's bios.bin;
                        bios.bin alone: pyemu's BIOS); with a Linux -kernel, the
                        firmware boots it through fw_cfg
  -drive file=F[,if=ide][,index=0-3][,media=disk|cdrom][,readonly=on][,snapshot=on]
                        an IDE drive with a raw image (format=raw)
  -hda/-hdb/-hdc/-hdd F IDE drive 0-3 from image F; -cdrom F: a CD-ROM as drive 2
  -snapshot             writes to every drive go to a temporary overlay, lost on exit
  -boot [order=]DRIVES  firmware boot order: c disk, d cdrom, a floppy, n network
  -rtc base=utc|localtime|DATE  the RTC's start (DATE: 2006-06-17 or 2006-06-17T16:01:21)
  -serial SPEC          next serial port: stdio, mon:stdio, null, none, file:PATH,
                        tcp:HOST:PORT[,server][,nowait], unix:PATH[,server][,nowait],
                        chardev:ID
  -monitor SPEC         human monitor on a chardev (stdio, none, tcp:..., unix:...)
  -chardev BACKEND,id=ID[,...]
                        a host backend for chardev:ID: null, stdio[,mux=on][,signal=off],
                        file,path=P, socket,host=H,port=N|path=P[,server=on][,wait=off]
  -mon chardev=ID[,mode=readline|control]
                        the human monitor (readline) or QMP (control) on chardev ID
  -qmp SPEC             QMP (JSON) monitor: unix:PATH,server[,nowait] or
                        tcp:HOST:PORT,server[,nowait] (HOST empty: loopback); repeatable
  -debugcon SPEC        debug console on ports 0xE9 and 0x402
  -nographic            no display: serial port and monitor on stdio (Ctrl-a h: help)
  -display none         no display (pyemu has none anyway)
  -vga none, -nic none, -net none
                        no VGA, no network: what pyemu's pc has anyway
  -nodefaults           no default serial port and monitor
  -no-user-config       accepted: pyemu reads no configuration files
  -S                    do not start the CPU; 'cont' in the monitor starts it
  -gdb DEV              gdb stub on DEV: tcp:[HOST]:PORT (no HOST: loopback) or
                        unix:PATH[,server]; a connecting gdb stops the guest
  -s                    shorthand for -gdb tcp::1234
  -readconfig FILE      build the machine a 'machine-export' FILE describes (no other
                        machine option; -serial, -monitor, -drive id=ID,file=PATH,
                        -incoming and the like bind it)
  -loadvm TAG           start from snapshot TAG (saved with savevm in $PYEMU_SNAPSHOT_DIR)
  -incoming URI         wait for a migration from URI (tcp:HOST:PORT, unix:PATH, file:PATH,
                        exec:CMD, fd:N) and run the guest it brings; with no machine
                        options the machine is built from the stream; 'defer': wait
                        for the monitor's migrate_incoming
  -allow-files DIR       a bare -incoming destination may open the images, kernel,
                        initrd and firmware its stream names only under DIR
                        (repeatable; firmware is also taken where it is installed)
  -object tls-creds-x509,id=ID,dir=DIR,endpoint=server|client[,verify-peer=on|off]
                        TLS credentials for migration (DIR holds ca-cert.pem and
                        server-cert.pem, server-key.pem or client-cert.pem,
                        client-key.pem); 'migrate_set_parameter tls-creds ID' uses them
  -global migration.tls-creds=ID
                        the same from the start (a bare -incoming); also
                        migration.tls-hostname=NAME: the name the destination's
                        certificate must carry (default: the URI's host)
  -icount [shift=]N     deterministic time: each instruction takes 2^N ns
  -no-reboot            exit instead of resetting the machine
  -no-shutdown          stay paused when the guest powers off (the monitor stays)
  -name NAME            name of the guest
  -d ITEMS              log items (comma separated; '-d help' lists them)
  -D FILE               write the log to FILE instead of stderr
  -version              print the version and exit
  -h, -help             print this help and exit
"""

# -d items with QEMU's names: (the logger that writes them, what they show). The ones
# that hook every block (in_asm, exec, cpu) cost nothing unless asked for.
LOG_ITEMS = {
    "in_asm": ("emu.trace.in_asm", "show target assembly code for each compiled TB"),
    "int": ("emu.cpu.int", "show interrupts/exceptions in short format"),
    "exec": ("emu.trace.exec", "show trace before each executed TB (lots of logs)"),
    "cpu": ("emu.trace.cpu", "show CPU registers before entering a TB (lots of logs)"),
    "cpu_reset": ("emu.machine", "show CPU state before CPU resets"),
    "unimp": ("emu.unimp", "log unimplemented functionality: each I/O port no device "
              "models, once (MSRs cannot be seen: the engine has no RDMSR/WRMSR hook)"),
    "guest_errors": ("emu.memory", "log when the guest OS does something invalid: "
                     "accesses to ports no device decodes"),
}
# QEMU's items pyemu cannot give, and why (listed by -d help, refused with the reason)
LOG_ITEMS_UNSUPPORTED = {
    "mmu": "not supported: the engine walks page tables with no hook to log them "
           "('info tlb' shows the mappings)",
    "pcall": "not supported: the engine has no hook on far calls, returns and task "
             "switches ('-d int' shows the exceptions)",
}


def _log_help() -> str:
    rows = [(k, v[1]) for k, v in LOG_ITEMS.items()] + list(LOG_ITEMS_UNSUPPORTED.items())
    return "Log items (comma separated):\n" + "".join(f"{k:<15} {text}\n" for k, text in rows)


class UsageError(Exception):
    """A bad command line; the message is the whole one-line complaint."""


class Unsupported(ValueError):
    """A value QEMU takes for something pyemu does not have; the message says what
    (the complaint is "OPTION VALUE: message", without "invalid value")."""


NO_KVM = "no KVM here: pyemu runs on TCG"


@dataclass
class Options:
    cfg: MachineConfig
    log_items: list[str]
    log_file: str | None
    info_only: str | None = None  # text to print instead of running
    qmp: list[str] = field(default_factory=list)  # -qmp listener specs (host bindings)
    # -object: the option's text and its credentials (files read); main() creates them
    objects: list[tuple[str, Credentials]] = field(default_factory=list)
    # -global migration.NAME=VALUE: migration parameters' defaults, set by main()
    migration: list[tuple[str, str]] = field(default_factory=list)
    gdb: str | None = None  # -gdb device (a host binding): main() opens the stub


@dataclass
class _Chardevs:
    """-chardev definitions by id (each as the legacy spec the chardev layer opens, and
    whether mux=on lets a serial port share it with the monitor), and the -mon uses."""

    specs: dict[str, tuple[str, bool]] = field(default_factory=dict)
    monitors: list[tuple[str, str]] = field(default_factory=list)  # (id, mode)


def _icount(text: str) -> int:
    for part in text.split(","):
        key, _, value = part.partition("=")
        if not value:
            key, value = "shift", key
        if key == "shift":
            if value == "auto":
                return 3
            check_icount_shift(int(value) if value.isdigit() else value)
            return int(value)
        if key not in ("sleep", "align"):
            raise ValueError(f"unknown parameter {key!r}")
    return 3


def parse_args(argv: list[str]) -> Options:
    cfg = MachineConfig()
    log_items: list[str] = []
    log_file: str | None = None
    qmp: list[str] = []
    objects: list[tuple[str, Credentials]] = []
    migration: list[tuple[str, str]] = []
    chardevs = _Chardevs()
    gdb: str | None = None
    i = 0

    def arg() -> str:
        nonlocal i
        if i + 1 >= len(argv):
            raise UsageError(f"{argv[i]}: requires an argument")
        i += 1
        return argv[i]

    while i < len(argv):
        opt = argv[i]
        name = "-" + opt.lstrip("-") if opt.startswith("-") else opt
        if name in ("-h", "-help"):
            return Options(cfg, [], None, USAGE)
        if name == "-version":
            return Options(cfg, [], None, f"pyemu version {__version__}\n")
        handler = _FLAGS.get(name)
        if handler is not None:
            try:
                handler(cfg)
            except Unsupported as e:
                raise UsageError(f"{name}: {e}") from None
        elif name in _VALUED:
            value = arg()
            try:
                result = _VALUED[name](cfg, value)
            except Unsupported as e:
                raise UsageError(f"{name} {value}: {e}") from None
            except ValueError as e:
                if str(e).startswith(name + " "):  # the parser named the part at fault
                    raise UsageError(str(e)) from None
                detail = f": {e}" if str(e) and str(e) != value else ""
                raise UsageError(f"{name} {value}: invalid value{detail}") from None
            if isinstance(result, str):
                return Options(cfg, [], None, result)
        elif name == "-d":
            value = arg()
            if value == "help":
                return Options(cfg, [], None, _log_help())
            for item in value.split(","):
                if item in LOG_ITEMS_UNSUPPORTED:
                    raise UsageError(f"-d {value}: {item}: {LOG_ITEMS_UNSUPPORTED[item]}")
                if item not in LOG_ITEMS:
                    raise UsageError(f"-d {value}: unknown log item {item!r} "
                                     "('-d help' lists them)")
                log_items.append(item)
        elif name in ("-gdb", "-s"):
            gdb = _gdb(arg() if name == "-gdb" else "tcp::1234")
        elif name == "-D":
            log_file = arg()
        elif name == "-qmp":
            qmp.append(_qmp(arg()))
        elif name == "-object":
            value = arg()
            objects.append((value, _object(value)))
        elif name == "-global":
            migration.append(_global(arg()))
        elif name == "-chardev":
            value = arg()
            try:
                chardev_id, spec, mux = chardev_option(value)
            except ValueError as e:
                raise UsageError(f"-chardev {value}: {e}") from None
            if chardev_id in chardevs.specs:
                raise UsageError(f"-chardev {value}: id '{chardev_id}' is taken")
            chardevs.specs[chardev_id] = (spec, mux)
        elif name == "-mon":
            value = arg()
            try:
                chardevs.monitors.append(_mon(value))
            except ValueError as e:
                raise UsageError(f"-mon {value}: {e}") from None
        else:
            what = "invalid option" if opt.startswith("-") else "unexpected argument"
            raise UsageError(f"{opt}: {what}")
        i += 1
    qmp += _bind_chardevs(cfg, chardevs)
    if cfg.readconfig is not None:
        cfg = _read_config(cfg)
    _finish(cfg)
    return Options(cfg, log_items, log_file, qmp=qmp, objects=objects, migration=migration,
                   gdb=gdb)


def _gdb(value: str) -> str | None:
    """-gdb DEV, checked now and opened by main(); ``none``: no stub."""
    from emu.monitor.gdbstub import parse_spec

    if value == "none":
        return None
    try:
        parse_spec(value)
    except ValueError as e:
        raise UsageError(f"-gdb {value}: {e}") from None
    return value


def _qmp(value: str) -> str:
    from emu.monitor.qmp import parse_spec

    try:
        parse_spec(value)
    except ValueError as e:
        raise UsageError(f"-qmp {value}: {e}") from None
    return value


def _object(value: str) -> Credentials:
    try:
        return parse_object(value)
    except ValueError as e:
        raise UsageError(f"-object {value}: {e}") from None


def _global(value: str) -> tuple[str, str]:
    """``migration.NAME=VALUE`` as (NAME, VALUE): QEMU's way to give a migration
    parameter before any monitor exists. Only the migration's TLS parameters here."""
    target, eq, setting = value.partition("=")
    driver, _, name = target.partition(".")
    if not eq or driver != "migration" or name not in TLS_PARAMETERS:
        raise UsageError(f"-global {value}: pyemu's -global sets no device properties, "
                         "only migration.tls-creds=ID and migration.tls-hostname=NAME")
    return name, setting


def _keyvals(parts: list[str]) -> dict[str, str]:
    """QEMU's ``key=value,...``; ValueError names a part without '='."""
    out = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"'{part}': expected KEY=VALUE")
        out[key] = value
    return out


def _on(value: str, key: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError(f"{key}={value}: expected on or off")
    return value == "on"


def _mon(value: str) -> tuple[str, str]:
    """``-mon chardev=ID[,mode=readline|control][,pretty=on|off]`` as (ID, mode)."""
    opts = _keyvals(value.split(","))
    mode = opts.pop("mode", "readline")
    opts.pop("pretty", None)
    if "chardev" not in opts or set(opts) != {"chardev"}:
        raise ValueError("takes chardev=ID[,mode=readline|control]")
    if mode not in ("readline", "control"):
        raise ValueError(f"mode={mode}: readline or control")
    return opts["chardev"], mode


def _bind_chardevs(cfg: MachineConfig, chardevs: _Chardevs) -> list[str]:
    """Put each -chardev's spec where -serial/-monitor/-debugcon chardev:ID and -mon
    name it; returns the QMP listeners -mon mode=control asked for. A chardev serves one
    frontend, or, with mux=on, a serial port and the human monitor (mon:SPEC)."""
    users: dict[str, list[str]] = {}
    serial_of: dict[str, int] = {}  # chardev id -> the COM port using it

    def spec_of(chardev_id: str, option: str) -> str:
        if chardev_id not in chardevs.specs:
            raise UsageError(f"{option}: no -chardev with id '{chardev_id}'")
        users.setdefault(chardev_id, []).append(option)
        return chardevs.specs[chardev_id][0]

    def resolve(spec: str, option: str) -> str:
        return spec_of(spec[8:], f"{option} {spec}") if spec.startswith("chardev:") else spec

    for n, spec in enumerate(cfg.serial):
        if spec.startswith("chardev:"):
            serial_of[spec[8:]] = n
        cfg.serial[n] = resolve(spec, "-serial")
    # -monitor chardev:ID is -mon chardev=ID (QEMU's older spelling)
    chardevs.monitors[:0] = [(s[8:], "readline") for s in cfg.monitor if s.startswith("chardev:")]
    cfg.monitor = [s for s in cfg.monitor if not s.startswith("chardev:")]
    if cfg.debugcon is not None:
        cfg.debugcon = resolve(cfg.debugcon, "-debugcon")
    qmp = []
    for chardev_id, mode in chardevs.monitors:
        spec = spec_of(chardev_id, f"-mon chardev={chardev_id}")
        if mode == "control":
            from emu.monitor.qmp import parse_spec

            try:
                parse_spec(spec)
            except ValueError as e:
                raise UsageError(f"-mon chardev={chardev_id},mode=control: {e}") from None
            qmp.append(spec)
        elif chardevs.specs[chardev_id][1] and chardev_id in serial_of:
            cfg.serial[serial_of[chardev_id]] = f"mon:{spec}"  # the mux's monitor side
        else:
            cfg.monitor.append(spec)
    for spec in cfg.devices:
        wanted = parse_device(spec).chardev
        if wanted is not None:
            spec_of(wanted, f"-device {spec}")
    cfg.chardevs = {cid: spec for cid, (spec, _) in chardevs.specs.items()
                    if not any(user.startswith("-serial") or user.startswith("-mon")
                               or user.startswith("-debugcon") for user in users.get(cid, []))}
    for chardev_id, options in users.items():
        shared = chardevs.specs[chardev_id][1] and len(options) == 2 and \
            chardev_id in serial_of and options[1].startswith("-mon ")
        if len(options) > 1 and not shared:
            raise UsageError(f"chardev '{chardev_id}' is used by {' and '.join(options)}; "
                             "mux=on shares one between a serial port and -mon")
    return qmp


def _create_objects(opts: Options) -> None:
    """-object and -global act on the whole process, as in QEMU: the credentials join
    the object table, then each global becomes the default of its migration parameter
    (checked as migrate_set_parameter checks it: the tls-creds id must exist)."""
    from emu.host import tls
    from emu.migration.live import PARAMETERS, Migration

    for text, creds in opts.objects:
        try:
            tls.add(creds)
        except ValueError as e:
            raise UsageError(f"-object {text}: {e}") from None
    for name, value in opts.migration:
        try:
            Migration().set_parameter(name, value)
        except ValueError as e:
            raise UsageError(f"-global migration.{name}={value}: {e}") from None
        PARAMETERS[name] = value


# -machine properties for hardware pyemu's pc does not have: "off" is what it is
MACHINE_ABSENT = ("usb", "vmport", "hpet", "smm")


def _machine(cfg: MachineConfig, value: str) -> str | None:
    first, *parts = value.split(",")
    if first == "help":
        return "Supported machines are:\npc                   Standard PC (i440FX + PIIX, 1996)\n"
    if "=" in first:  # properties only: the default machine
        parts.insert(0, first)
        first = ""
    opts = _keyvals(parts)
    mtype = opts.pop("type", first)
    if "accel" in opts:
        _accel_names(opts.pop("accel").split(":"))
    for key, val in opts.items():
        if key not in MACHINE_ABSENT:
            raise ValueError(f"unknown property '{key}'")
        if _on(val, key):
            raise Unsupported(f"pyemu's pc has no {key}")
    if mtype:
        cfg.machine = machine_type(mtype)
    return None


def _accel_names(names: list[str]) -> None:
    """An accelerator list (QEMU tries each in turn): it must offer TCG."""
    if "tcg" not in names:
        raise Unsupported(NO_KVM if "kvm" in names else
                          f"no {names[0].upper()} here: pyemu runs on TCG")


def _accel(cfg: MachineConfig, value: str) -> None:
    """-accel tcg[,thread=single|multi]: one CPU runs on TCG either way."""
    name, *parts = value.split(",")
    _accel_names([name])
    opts = _keyvals(parts)
    if set(opts) - {"thread"} or opts.get("thread", "single") not in ("single", "multi"):
        raise ValueError("pyemu's tcg takes thread=single|multi only")


def _cpu(cfg: MachineConfig, value: str) -> str | None:
    if value == "help":
        return models_help()
    name, *flags = value.split(",")
    if name in KVM_ONLY:
        raise Unsupported(f"{NO_KVM} ('-cpu max' has all it can do)")
    find_model(name)
    if flags:
        raise Unsupported(f"pyemu's CPU models take no feature flags ({flags[0]})")
    cfg.cpu = name
    return None


def _smp(cfg: MachineConfig, value: str) -> None:
    """-smp N or cpus=N,maxcpus=,sockets=,dies=,clusters=,cores=,threads=: all 1."""
    parts = value.split(",")
    if parts[0].isdigit():
        parts[0] = f"cpus={parts[0]}"
    for key, count in _keyvals(parts).items():
        if key not in ("cpus", "maxcpus", "sockets", "dies", "clusters", "cores", "threads"):
            raise ValueError(f"unknown parameter '{key}'")
        if not count.isdigit():
            raise ValueError(f"{key}={count}: not a number")
        if int(count) > 1:
            raise Unsupported("pyemu has one CPU")


def _absent(what: str, keep: str) -> Callable[[MachineConfig, str], None]:
    """An option whose only value pyemu can honour is ``none``."""

    def check(cfg: MachineConfig, value: str) -> None:
        if value != "none":
            raise Unsupported(f"pyemu has {what} ({keep} none)")

    return check


def _device(cfg: MachineConfig, value: str) -> str | None:
    if value == "help":
        return devices_help()
    try:
        parse_device(value)
    except ValueError as e:
        raise Unsupported(str(e)) from None
    cfg.devices.append(value)
    return None


def _kvm(cfg: MachineConfig) -> None:
    raise Unsupported(NO_KVM)


def _memory(cfg: MachineConfig, value: str) -> None:
    size = (parse_size(value) + 0xFFF) & ~0xFFF
    check_ram_size(size)
    cfg.ram_size = size


def _boot(cfg: MachineConfig, value: str) -> None:
    order = value
    for part in value.split(","):
        key, eq, val = part.partition("=")
        if eq and key in ("order", "once"):
            order = val
        elif eq and key not in ("menu", "splash-time", "reboot-timeout", "strict"):
            raise ValueError(f"unknown parameter {key!r}")
        elif not eq:
            order = part
    boot_order_nibbles(order)
    cfg.boot_order = order


def _rtc(cfg: MachineConfig, value: str) -> None:
    for part in value.split(","):
        key, _, val = part.partition("=")
        if key == "base":
            parse_rtc_base(val)
            cfg.rtc_base = val
        elif key not in ("clock", "driftfix"):
            raise ValueError(f"unknown parameter {key!r}")


def _drive_option(name: str) -> Callable[[MachineConfig, str], None]:
    return lambda cfg, value: cfg.drives.append(drive_for_option(name, value))


def _display(cfg: MachineConfig, value: str) -> None:
    if value.split(",")[0] not in ("none", "curses", "nographic"):
        raise ValueError("pyemu has no graphical display; use 'none'")


def _set(attr: str) -> Callable[[MachineConfig, str], None]:
    return lambda cfg, value: setattr(cfg, attr, value)


def _append(attr: str) -> Callable[[MachineConfig, str], None]:
    return lambda cfg, value: getattr(cfg, attr).append(value)


def _shaping(handler: Callable[..., str | None]) -> Callable[..., str | None]:
    """An option that shapes the machine: a destination given one builds the machine
    from its own command line and checks it against the stream's."""

    def shape(cfg: MachineConfig, *value: str) -> str | None:
        cfg.shaped = True
        return handler(cfg, *value)

    return shape


def _allow_files(cfg: MachineConfig, value: str) -> None:
    if not os.path.isdir(value):
        raise ValueError(f"-allow-files {value}: not a directory")
    cfg.allow_files.append(os.path.realpath(value))


def _drive(cfg: MachineConfig, value: str) -> None:
    cfg.drives.append(parse_drive(value))
    keys = {part.partition("=")[0] for part in value.split(",") if part}
    if keys != {"id", "file"}:  # id= and file= alone re-bind a migrated drive
        cfg.shaped = True


_VALUED: dict[str, Callable[[MachineConfig, str], str | None]] = {
    "-M": _shaping(_machine), "-machine": _shaping(_machine), "-m": _shaping(_memory),
    "-kernel": _shaping(_set("kernel")), "-append": _shaping(_set("append")),
    "-initrd": _shaping(_set("initrd")), "-bios": _shaping(_set("bios")),
    "-serial": _append("serial"), "-monitor": _append("monitor"),
    "-debugcon": _set("debugcon"), "-name": _set("name"), "-display": _display,
    "-icount": _shaping(lambda cfg, v: setattr(cfg, "icount_shift", _icount(v))),
    "-boot": _shaping(_boot),
    "-rtc": _shaping(_rtc),
    "-loadvm": _set("loadvm"),
    "-readconfig": _set("readconfig"),
    "-incoming": _set("incoming"),
    "-allow-files": _allow_files,
    "-drive": _drive,
    "-cpu": _shaping(_cpu), "-accel": _accel, "-smp": _smp,
    "-device": _shaping(_device),
    "-vga": _absent("no VGA", "-vga"),
    "-nic": _absent("no network devices", "-nic"),
    "-net": _absent("no network devices", "-net"),
    **{f"-{name}": _shaping(_drive_option(name))
       for name in ("hda", "hdb", "hdc", "hdd", "cdrom")},
}
_FLAGS: dict[str, Callable[[MachineConfig], None]] = {
    "-nographic": lambda cfg: setattr(cfg, "nographic", True),
    "-S": lambda cfg: setattr(cfg, "start_paused", True),
    "-no-reboot": _shaping(lambda cfg: setattr(cfg, "no_reboot", True)),
    "-snapshot": _shaping(lambda cfg: setattr(cfg, "snapshot", True)),
    "-no-shutdown": lambda cfg: setattr(cfg, "no_shutdown", True),
    "-nodefaults": lambda cfg: setattr(cfg, "nodefaults", True),
    "-enable-kvm": _kvm,
    "-no-user-config": lambda cfg: None,  # pyemu reads no configuration files anyway
}


def _demo_drive() -> DriveSpec:
    """The bundled demo guest's disk image as the first IDE disk, booted through the BIOS;
    read-only, so that several pyemu can share it and savevm accepts it."""
    image = resources.files("emu.guests").joinpath("demo.img")
    if not image.is_file():
        raise UsageError(f"{image}: the demo guest's disk image is missing; "
                         "'make' in the source tree builds it")
    return DriveSpec(file=str(image), index=0, readonly=True, option="-hda", format="raw")


def _read_config(local: MachineConfig) -> MachineConfig:
    """The machine of the -readconfig file, bound by the rest of the command line."""
    from emu.migration.stream import MAX_DESC, StreamError, load_description

    path = local.readconfig
    if local.shaped:
        raise UsageError(f"-readconfig {path}: the machine comes from the file; give only "
                         "options that bind it (-serial, -monitor, -drive id=ID,file=PATH, "
                         "-incoming, -S, ...)")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_DESC + 1)
    except OSError as e:
        raise UsageError(f"-readconfig {path}: {e.strerror or e}") from None
    if len(text) > MAX_DESC:
        raise UsageError(f"-readconfig {path}: larger than {MAX_DESC >> 20} MiB: not a "
                         "machine description")
    try:
        desc = load_description(text)
        if not isinstance(desc.get("config"), dict):
            raise ValueError("description/config: missing (not a machine-export file?)")
        local.serial = _default_serial(local)
        cfg = from_stream(desc["config"], local)
    except (StreamError, ValueError) as e:
        raise UsageError(f"-readconfig {path}: {e}") from None
    cfg.readconfig, cfg.described, cfg.shaped = path, desc, True
    return cfg


def _default_serial(cfg: MachineConfig) -> list[str]:
    """The serial ports given, or QEMU's default: COM1 on stdio (shared with the monitor
    unless one was given)."""
    if cfg.serial or cfg.nodefaults:
        return cfg.serial
    return ["stdio" if cfg.monitor else "mon:stdio"]


def _finish(cfg: MachineConfig) -> None:
    """Defaults that depend on other options, as QEMU applies them."""
    # A destination without machine options gets its machine (drives too) from the stream.
    if cfg.kernel is None and cfg.bios is None and not cfg.drives and cfg.incoming is None:
        cfg.drives = [_demo_drive()]
    try:
        cfg.drives = assign_indexes(cfg.drives)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if cfg.incoming is not None and cfg.loadvm is not None:
        raise UsageError("-loadvm and -incoming cannot be used together")
    if cfg.incoming == "defer" and not cfg.shaped:
        raise UsageError("-incoming defer: a destination that builds its machine from the "
                         "stream needs the URI at start (or give the machine options)")
    if cfg.incoming not in (None, "defer"):
        from emu.migration.transport import TransportError, parse_uri

        try:
            parse_uri(cfg.incoming)
        except TransportError as e:
            raise UsageError(f"-incoming {e}") from None
    if len(cfg.serial) > 4:
        raise UsageError(f"-serial {cfg.serial[4]}: at most 4 serial ports")
    cfg.serial = _default_serial(cfg)
    stdio_users = [s for s in cfg.serial + cfg.monitor + [cfg.debugcon or ""]
                   if s in ("stdio", "mon:stdio")]
    if len(stdio_users) > 1:
        raise UsageError("stdio is used by more than one device; use mon:stdio to share it")


def _setup_logging(opts: Options) -> None:
    handler: logging.Handler
    if opts.log_file:
        handler = logging.FileHandler(opts.log_file)
    else:
        handler = _CrlfHandler()
    handler.setFormatter(_LogFormatter("pyemu: %(message)s"))
    root = logging.getLogger("emu")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for item in opts.log_items:
        logging.getLogger(LOG_ITEMS[item][0]).setLevel(logging.DEBUG)


class _LogFormatter(logging.Formatter):
    """-d output (debug records) bare, as QEMU's log; pyemu's own messages prefixed."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.DEBUG and not record.exc_info:
            return record.getMessage()
        return super().format(record)


class _CrlfHandler(logging.StreamHandler):
    """stderr lines that stay readable while the terminal is in raw mode."""

    terminator = "\r\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except UsageError as e:
        print(f"pyemu: {e}", file=sys.stderr)
        return 1
    if opts.info_only is not None:
        sys.stdout.write(opts.info_only)
        return 0
    try:
        _create_objects(opts)
    except UsageError as e:
        print(f"pyemu: {e}", file=sys.stderr)
        return 1
    _setup_logging(opts)
    from emu.launch import launch  # heavy imports only when running

    servers = []
    if opts.gdb is not None:
        from emu.monitor.gdbstub import GdbServer

        try:
            servers.append(GdbServer(opts.gdb))
        except OSError as e:
            print(f"pyemu: -gdb {opts.gdb}: {e}", file=sys.stderr)
            return 1
    return launch(opts.cfg, signal_handlers=_install_signals, qmp=opts.qmp, servers=servers)


def _install_signals(on_signal: Callable[[str], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda num, _frame: on_signal(signal.Signals(num).name))


if __name__ == "__main__":
    sys.exit(main())
