"""The one command registry behind the human monitor, and what QMP shares with it.

Commands take the machine and their argument words and return text; they run on the
machine thread. Names and output follow QEMU's human monitor, so habits carry over.
A bad command or argument raises ``CommandError`` with a one-line message.

The actions both front ends offer (resume, migrate, snapshots...) are plain functions
here (``resume``, ``start_migration``, ``save_snapshot``...); the HMP commands and the
QMP commands of emu/monitor/qmp.py are thin wrappers around them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emu import __version__
from emu.migration import savevm, snapshot

if TYPE_CHECKING:
    from emu.machine.machine import Machine
    from emu.migration.live import Outgoing

Handler = Callable[["Machine", list[str]], "str | Pending"]


class Pending:
    """The result of a command that finishes later (a ``migrate`` without -d): the
    monitor stays busy, without holding the machine thread, until ``wait()`` returns
    the text."""

    def __init__(self, wait: Callable[[], str]) -> None:
        self.wait = wait


class CommandError(Exception):
    """A one-line error for the person or tool that sent the command."""


@dataclass(frozen=True)
class Command:
    name: str
    params: str  # usage, e.g. "[cmd]"
    help: str
    fn: Handler
    max_args: int
    min_args: int = 0


COMMANDS: dict[str, Command] = {}
INFO: dict[str, Command] = {}


def command(name: str, params: str = "", help: str = "", max_args: int = 0, min_args: int = 0):
    """Register a command; ``info X`` commands go into the ``info`` table."""

    def deco(fn: Handler) -> Handler:
        table, key = (INFO, name[5:]) if name.startswith("info ") else (COMMANDS, name)
        if key in table:
            raise ValueError(f"monitor command {name!r} registered twice")
        table[key] = Command(name, params, help, fn, max_args, min_args)
        return fn

    return deco


def human(fn: Callable[[], Any], refusal: type[Exception]) -> str:
    """Run a board operation for HMP: no output when done, a ``refusal`` (the board's
    error in QEMU's words) as "Error: ..."."""
    try:
        fn()
    except refusal as e:
        raise CommandError(f"Error: {e}") from None
    return ""


def execute(machine: Machine, line: str) -> str | Pending:
    """Run one monitor line; returns its output (possibly empty)."""
    if len(line) > 4096:
        raise CommandError("command line too long")
    words = line.split()
    if not words:
        return ""
    name, args = words[0], words[1:]
    if "/" in name and name[0] != "/":  # QEMU's glued format: x/4x ADDR
        name, fmt = name.split("/", 1)
        args = ["/" + fmt, *args]
    if name == "info":
        if not args:
            return _help_table(INFO, "info ")
        cmd = INFO.get(args[0])
        if cmd is None:
            raise CommandError(f"unknown info command: '{args[0]}'")
        args = args[1:]
    else:
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise CommandError(f"unknown command: '{name}'")
    if len(args) > cmd.max_args:
        raise CommandError(f"{cmd.name}: too many arguments (usage: {cmd.name} {cmd.params})")
    if len(args) < cmd.min_args:
        raise CommandError(f"{cmd.name}: missing argument (usage: {cmd.name} {cmd.params})")
    return cmd.fn(machine, args)


def _help_table(table: dict[str, Command], prefix: str = "") -> str:
    rows = [(f"{prefix}{k} {c.params}".strip(), c.help) for k, c in sorted(table.items())]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{usage:<{width}} -- {text}" for usage, text in rows)


@command("help", "[cmd]", "show the help for all commands or just for one", max_args=1)
def _help(machine: Machine, args: list[str]) -> str:
    if not args:
        return _help_table(COMMANDS) + "\n" + _help_table(INFO, "info ")
    cmd = COMMANDS.get(args[0])
    if cmd is None:
        raise CommandError(f"unknown command: '{args[0]}'")
    return f"{cmd.name} {cmd.params}".strip() + f" -- {cmd.help}"


@command("info status", help="show the VM status (running|paused)")
def _info_status(machine: Machine, args: list[str]) -> str:
    state = machine.runstate
    if state == "running":
        return "VM status: running"
    if state == "paused":
        return "VM status: paused"
    return f"VM status: paused ({state})"


@command("info version", help="show the version of pyemu")
def _info_version(machine: Machine, args: list[str]) -> str:
    return f"{__version__} (pyemu)"


@command("stop", help="stop emulation")
def _stop(machine: Machine, args: list[str]) -> str:
    machine.stop()
    return ""


def resume(machine: Machine, force: bool = False) -> None:
    """cont: run the guest, unless its state, a migration or a disk lock forbids it;
    ``force`` overrides only a migration whose outcome is unknown."""
    from emu.migration.live import RunRefused

    if machine.runstate in ("shutdown", "internal-error", "inmigrate", "finish-migrate"):
        raise CommandError(f"cannot continue a machine in state {machine.runstate}")
    try:
        machine.cont(force)
    except RunRefused as e:
        raise CommandError(f"Error: cannot continue: {e}") from None


@command("cont", "[-f]", "resume emulation (-f: after a migration whose outcome is "
         "unknown, run this copy: only when the other side certainly does not)",
         max_args=1)
def _cont(machine: Machine, args: list[str]) -> str:
    flags, rest = split_flags(args, "f")
    if rest:
        raise CommandError(f"cont: unexpected argument {rest[0]!r} (usage: cont [-f])")
    resume(machine, "f" in flags)
    return ""


@command("c", "[-f]", "resume emulation (short for cont)", max_args=1)
def _c(machine: Machine, args: list[str]) -> str:
    return _cont(machine, args)


@command("system_reset", help="reset the system")
def _system_reset(machine: Machine, args: list[str]) -> str:
    machine.reset_now("system_reset from the monitor", "host-qmp-system-reset")
    return ""


def press_power_button(machine: Machine) -> None:
    """system_powerdown: the PIIX4 PM power button; an ACPI guest that enabled it gets
    an SCI and shuts itself down, a guest without ACPI ignores it, as on QEMU.
    Announced with a POWERDOWN event."""
    pm = getattr(machine, "pm", None)
    if pm is not None:
        pm.press_power_button()
    machine.emit("POWERDOWN", {})


@command("system_powerdown", help="send system power down event")
def _system_powerdown(machine: Machine, args: list[str]) -> str:
    press_power_button(machine)
    return ""


@command("quit", help="quit the emulator")
def _quit(machine: Machine, args: list[str]) -> str:
    machine.request_shutdown(0, "quit from the monitor", "host-qmp-quit")
    return ""


@command("q", help="quit the emulator (short for quit)")
def _q(machine: Machine, args: list[str]) -> str:
    return _quit(machine, args)


# -- snapshots: the machine and its disks (emu/migration/savevm.py) -----------------------

def save_snapshot(machine: Machine, tag: str) -> None:
    """savevm: write the machine (and its qcow2 disks' snapshots), whole or not at all."""
    try:
        savevm.save(machine, tag)
    except (snapshot.SnapshotError, ValueError) as e:  # ValueError: the board refuses
        raise CommandError(f"Error: {e}") from None


def load_snapshot(machine: Machine, tag: str) -> None:
    """loadvm: restore the snapshot ``tag``; on any fault the machine is unchanged."""
    try:
        savevm.load(machine, tag)
    except snapshot.SnapshotError as e:
        raise CommandError(f"Error: {e}") from None
    except ValueError as e:  # the running machine is unchanged
        raise CommandError(f"Error: snapshot '{tag}': {e}") from None


def delete_snapshot(machine: Machine, tag: str) -> None:
    """delvm: remove the snapshot ``tag``."""
    try:
        savevm.delete(machine, tag)
    except (snapshot.SnapshotError, ValueError) as e:
        raise CommandError(f"Error: {e}") from None


@command("savevm", "[tag]", "save a VM snapshot (into the qcow2 disks, else to "
         "$PYEMU_SNAPSHOT_DIR)", max_args=1)
def _savevm(machine: Machine, args: list[str]) -> str:
    save_snapshot(machine, args[0] if args else time.strftime("vm-%Y%m%d%H%M%S"))
    return ""


@command("loadvm", "tag", "restore a VM snapshot from its tag", max_args=1, min_args=1)
def _loadvm(machine: Machine, args: list[str]) -> str:
    load_snapshot(machine, args[0])
    return ""


@command("delvm", "tag", "delete a VM snapshot from its tag", max_args=1, min_args=1)
def _delvm(machine: Machine, args: list[str]) -> str:
    delete_snapshot(machine, args[0])
    return ""


@command("info snapshots", help="show the currently saved VM snapshots")
def _info_snapshots(machine: Machine, args: list[str]) -> str:
    try:
        found = savevm.listing(machine)
    except ValueError as e:
        raise CommandError(f"Error: {e}") from None
    if not found:
        return "There is no snapshot available."
    rows = ["TAG                      VM SIZE  DATE                 VM CLOCK"]
    for s in found:
        date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.date))
        clock = "" if s.vm_clock_ns is None else savevm.clock_text(s.vm_clock_ns)
        rows.append(f"{s.tag:<20} {s.vm_size / 2**20:8.1f} MiB  {date}  {clock}".rstrip())
    return "\n".join(rows)


# -- migration ---------------------------------------------------------------------------

def split_flags(args: list[str], allowed: str) -> tuple[set[str], list[str]]:
    flags = {a[1:] for a in args if a.startswith("-") and len(a) == 2}
    for f in flags:
        if f not in allowed:
            raise CommandError(f"invalid option -{f}")
    return flags, [a for a in args if not (a.startswith("-") and len(a) == 2)]


@command("migrate", "[-d] [-b] uri", "migrate to URI (tcp:HOST:PORT, unix:PATH, "
         "file:PATH, exec:CMD, fd:N); -d: return at once, 'info migrate' follows it; "
         "-b: copy the disks too (no shared storage)", max_args=3, min_args=1)
def _migrate(machine: Machine, args: list[str]) -> str | Pending:
    flags, rest = split_flags(args, "db")
    if len(rest) != 1:
        raise CommandError("migrate: missing URI (usage: migrate [-d] [-b] uri)")
    job = start_migration(machine, rest[0], block="b" in flags)
    if "d" in flags:
        return ""
    return Pending(lambda: (job.wait(), "" if job.status == "completed" else
                            f"Error: migration {job.status}: {job.error}")[1])


def start_migration(machine: Machine, uri: str, *, block: bool = False) -> Outgoing:
    """Start migrating to ``uri`` on the migration thread; returns the job at once.
    ``block``: copy the drives too, as the ``block`` capability does (``migrate -b``)."""
    from emu.migration.live import Outgoing
    from emu.migration.transport import TransportError, parse_uri

    settings = machine.migration
    if settings.active():
        raise CommandError("Error: There's a migration process in progress")
    if machine.runstate in ("inmigrate", "shutdown", "internal-error"):
        raise CommandError(f"Error: cannot migrate a machine in state {machine.runstate}")
    if machine.hold is not None:  # a copy that must not run must not be sent on either
        raise CommandError(f"Error: cannot migrate: {machine.hold.reason}")
    try:
        parse_uri(uri)
    except TransportError as e:
        raise CommandError(f"Error: {e}") from None
    job = settings.job = Outgoing(machine, settings, uri)
    job.caps["block"] = job.caps["block"] or block
    job.start()
    return job


def cancel_migration(machine: Machine) -> None:
    """migrate_cancel: the source carries on as before (nothing to do without a job)."""
    if machine.migration.job is not None:
        machine.migration.job.cancel()


def start_incoming_migration(machine: Machine, uri: str) -> None:
    """migrate_incoming: listen on ``uri`` (a machine started with -incoming defer)."""
    from emu.migration.live import Incoming, start_incoming
    from emu.migration.transport import TransportError

    if machine.runstate != "inmigrate" or machine.migration.incoming_status != "none":
        raise CommandError("Error: 'migrate_incoming' is only allowed once, on a machine "
                           "started with -incoming defer")
    try:
        incoming = Incoming(uri, machine.migration.parameters)
    except TransportError as e:
        raise CommandError(f"Error: {e}") from None
    start_incoming(machine, incoming)


@command("migrate_cancel", help="cancel the current migration")
def _migrate_cancel(machine: Machine, args: list[str]) -> str:
    cancel_migration(machine)
    return ""


@command("migrate_incoming", "uri", "wait for an incoming migration on URI "
         "(after -incoming defer)", max_args=1, min_args=1)
def _migrate_incoming(machine: Machine, args: list[str]) -> str:
    start_incoming_migration(machine, args[0])
    return ""


@command("info migrate", help="show migration status")
def _info_migrate(machine: Machine, args: list[str]) -> str:
    settings = machine.migration
    caps = " ".join(f"{k}: {'on' if v else 'off'}" for k, v in settings.capabilities.items())
    lines = [f"capabilities: {caps}"]
    job = settings.job
    if job is None:
        if settings.incoming_status != "none":
            lines.append(f"Migration status: {settings.incoming_status}")
        return "\n".join(lines)
    st = job.stats
    status = job.status + (f" ({job.error})" if job.status == "failed" else "")
    lines.append(f"Migration status: {status}")
    running = job.status in ("setup", "active", "device", "cancelling")
    elapsed = int((time.monotonic() - st.started) * 1000) if running else st.total_ms
    lines.append(f"total time: {elapsed} ms")
    if job.status == "completed":
        lines.append(f"downtime: {st.downtime_ms} ms")
        lines.append(f"stream sent: {st.sent_ms} ms after the stop")
    elif running:
        lines.append(f"expected downtime: {st.expected_downtime_ms} ms")
    lines += [f"setup: {st.setup_ms} ms",
              f"transferred ram: {st.transferred >> 10} kbytes",
              f"throughput: {st.mbps:.2f} mbps",
              f"remaining ram: {st.remaining >> 10} kbytes",
              f"total ram: {st.total >> 10} kbytes",
              f"duplicate: {st.duplicate} pages",
              f"normal: {st.normal} pages",
              f"normal bytes: {st.normal * 4} kbytes",
              f"dirty sync count: {st.dirty_sync_count}",
              "page size: 4 kbytes"]
    if running:
        lines.append(f"dirty pages rate: {st.dirty_pages_rate} pages")
    if st.throttle:
        lines.append(f"cpu throttle percentage: {st.throttle}")
    if job.convergence():
        lines.append(f"convergence: {job.convergence()}")
    return "\n".join(lines)


@command("info migrate_parameters", help="show current migration parameters")
def _info_migrate_parameters(machine: Machine, args: list[str]) -> str:
    units = {"downtime-limit": " ms", "max-bandwidth": " bytes/second"}
    return "\n".join(f"{k}: '{v}'" if isinstance(v, str) else f"{k}: {v}{units.get(k, '')}"
                     for k, v in machine.migration.parameters.items())


@command("info migrate_capabilities", help="show current migration capabilities")
def _info_migrate_capabilities(machine: Machine, args: list[str]) -> str:
    return "\n".join(f"{k}: {'on' if v else 'off'}"
                     for k, v in machine.migration.capabilities.items())


def _parameter_value(name: str, text: str) -> int | str:
    from emu.migration.live import PARAMETERS

    if isinstance(PARAMETERS[name], str):  # tls-creds, tls-hostname: as typed; "" unsets
        return "" if text == '""' else text
    if name == "max-bandwidth":  # HMP takes a size, in MiB without a suffix
        from emu.machine.config import parse_size

        try:
            return parse_size(text)
        except ValueError:
            raise ValueError(f"parameter '{name}' expects a size (e.g. 100M)") from None
    if not text.isdigit():
        raise ValueError(f"parameter '{name}' expects an integer")
    return int(text)


@command("migrate_set_parameter", "parameter value", "set a migration parameter",
         max_args=2, min_args=2)
def _migrate_set_parameter(machine: Machine, args: list[str]) -> str:
    try:
        if args[0] not in machine.migration.parameters:
            raise ValueError(f"unknown migration parameter '{args[0]}'")
        machine.migration.set_parameter(args[0], _parameter_value(*args))
    except ValueError as e:
        raise CommandError(f"Error: {e}") from None
    return ""


@command("migrate_set_capability", "capability state", "enable or disable a migration "
         "capability (on|off)", max_args=2, min_args=2)
def _migrate_set_capability(machine: Machine, args: list[str]) -> str:
    if args[1] not in ("on", "off"):
        raise CommandError(f"Error: expected 'on' or 'off', not '{args[1]}'")
    try:
        machine.migration.set_capability(args[0], args[1] == "on")
    except ValueError as e:
        raise CommandError(f"Error: {e}") from None
    return ""
