"""From a checked command line to a running machine, and back to an exit status.

Host backends are opened first and the machine built; if anything fails, everything
already opened is closed again (the terminal restored, sockets released) and the
error is one line naming the option at fault.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from emu.cpu.state import warm_up
from emu.cpu.x86 import make_spare_engine
from emu.host.block import BlockBackend
from emu.host.chardev import Chardev, MuxChardev, SocketChardev, parse_chardev
from emu.host.files import DATA_DIRS, check_granted
from emu.host.sockaddr import warm_resolver
from emu.machine.config import MachineConfig, from_stream
from emu.machine.pc.multiboot import BootError, module_list
from emu.machine.pc.pc import firmware_path, prepare
from emu.machine.pc.plug import parse_device
from emu.migration.live import Incoming, run_incoming, start_incoming
from emu.migration.stream import StreamError, matches
from emu.migration.transport import TransportError
from emu.monitor.hmp import HumanMonitor
from emu.monitor.qmp import QmpServer, open_servers
from emu.monitor.trace import attach as attach_tracer

log = logging.getLogger("emu.machine")


class LaunchError(Exception):
    """A host resource or the guest image could not be set up."""


def _open(spec: str, option: str, opened: list[Chardev]) -> Chardev:
    try:
        cd = parse_chardev(spec)
    except (ValueError, OSError) as e:
        raise LaunchError(f"{option} {spec}: {e}") from None
    opened.append(cd)
    return cd


@dataclass
class Built:
    """A machine and the host resources opened for it."""

    machine: Any
    opened: list[Chardev]
    monitors: list[Chardev]
    blocks: dict[int, BlockBackend]
    cfg: MachineConfig


def launch(cfg: MachineConfig, signal_handlers: Callable[[Callable[[str], None]], None],
           qmp: Sequence[str] = (), servers: Sequence[Any] = ()) -> int:
    """Build the machine for ``cfg``, run it until it exits, return the exit status.
    ``qmp``: -qmp listener specs, bound before anything else is opened; ``servers``:
    others already bound (the gdb stub), started and closed as the QMP servers are."""
    try:
        servers = [*open_servers(list(qmp)), *servers]
    except ValueError as e:
        for server in servers:
            server.close()
        print(f"pyemu: {e}", file=sys.stderr)
        return 1
    try:
        return _launch(cfg, signal_handlers, servers)
    finally:
        for server in servers:
            server.close()


def _launch(cfg: MachineConfig, signal_handlers: Callable[[Callable[[str], None]], None],
            servers: list[QmpServer]) -> int:
    incoming = None
    warm_up()  # here, not at the first migration's switchover
    warm_resolver()  # nor at its connect
    prepare()  # nor while a bare destination builds the machine its stream describes
    bare = cfg.incoming not in (None, "defer") and not cfg.shaped
    if bare:
        _rehearse()
    gc.collect()
    # What start-up made lives as long as the process: the collector's full passes
    # need not walk it again (tens of ms each otherwise, landing anywhere, a
    # migration's downtime included).
    gc.freeze()
    if cfg.incoming not in (None, "defer"):
        try:
            incoming = Incoming(cfg.incoming)
        except TransportError as e:
            print(f"pyemu: -incoming {e}", file=sys.stderr)
            return 1
        if bare:
            return _launch_from_stream(cfg, incoming, signal_handlers, servers)
    try:
        built = _build(cfg, lock=cfg.incoming is None)
        if cfg.described is not None:
            _check_described(built, cfg.described, f"-readconfig {cfg.readconfig}: ")
    except LaunchError as e:
        if incoming is not None:
            incoming.close()
        print(f"pyemu: {e}", file=sys.stderr)
        return 1
    if incoming is not None:
        start_incoming(built.machine, incoming)
    return _run(built, signal_handlers, servers)


def _launch_from_stream(cfg: MachineConfig, incoming: Incoming,
                        signal_handlers: Callable[[Callable[[str], None]], None],
                        servers: list[QmpServer]) -> int:
    """A bare destination: the machine is built from the stream's description, with the
    host bindings of this command line, before any RAM arrives."""
    made: list[Built] = []

    def on_description(desc: dict[str, Any]) -> Any:
        if "config" not in desc:
            raise ValueError("description: no machine configuration to build from (a "
                             "savevm snapshot is not a migration stream): give this "
                             "destination the machine's options, or use -loadvm")
        local = from_stream(desc["config"], cfg)
        check_grants(local, cfg)
        try:
            built = _build(local, lock=False)
        except LaunchError as e:
            raise ValueError(str(e)) from None
        _check_described(built, desc)
        built.machine.migration.incoming_status = "active"
        made.append(built)
        incoming.ready.set()
        return built.machine

    threading.Thread(target=run_incoming, name="migration-incoming", daemon=True,
                     args=(incoming, on_description,
                           lambda: made[0].machine if made else None)).start()
    incoming.ready.wait()
    if not made:
        return 1  # run_incoming said why
    return _run(made[0], signal_handlers, servers)


def _rehearse() -> None:
    """Build a machine of the default configuration and drop it: a bare destination's
    first build from its stream then finds every code path it takes already run once
    in this process (caches filled, lazy state made), so the source waits less. An
    engine of the default CPU model is made ready for that build as well."""
    from emu.machine.pc.pc import PcMachine

    machine = PcMachine(MachineConfig(incoming="defer"), {}, {}, {})
    machine.cpu.close()
    make_spare_engine(machine.cpu.model)


def check_grants(cfg: MachineConfig, own: MachineConfig) -> None:
    """A bare destination's files, as its stream names them (``cfg``): each must lie
    where this destination's own options (``own``) allow (what is only read, also among
    the installed firmware and pyemu's bundled guests), unless they re-bind it
    (``-drive id=``). PermissionError names the first that does not."""
    rebound = {d.id for d in own.drives if d.id}
    read_only = [*own.allow_files, *DATA_DIRS]
    for d in cfg.drives:
        if d.file and d.id not in rebound:
            check_granted(d.file, f"description/config/drives/{d.id}",
                          read_only if d.readonly or d.snapshot or cfg.snapshot
                          else own.allow_files)
    if cfg.kernel:
        check_granted(cfg.kernel, "description/config/kernel", read_only)
    if cfg.initrd:
        # a Linux initrd is one file, Multiboot's are "mod1 args,mod2": which one the
        # kernel is, is known only once it is read, so both readings must be granted
        paths = [path for path, _ in module_list(cfg.initrd)]
        for path in ([cfg.initrd] if os.path.isfile(cfg.initrd) else []) + paths:
            check_granted(path, "description/config/initrd", read_only)
    if cfg.bios:
        check_granted(firmware_path(cfg.bios), "description/config/bios", read_only)


def _build(cfg: MachineConfig, *, lock: bool) -> Built:
    """Open the host resources and build the machine; on failure, close what was opened
    and raise LaunchError naming the option at fault. ``lock=False``: images stay
    inactive for an incoming migration."""
    from emu.machine.pc.pc import PcMachine

    opened: list[Chardev] = []
    monitors: list[Chardev] = []
    blocks: dict[int, BlockBackend] = {}
    try:
        for k, spec in enumerate(cfg.drives):
            try:
                backend = spec.open(snapshot=cfg.snapshot, lock=lock)
            except OSError as e:
                raise LaunchError(f"{spec.origin}: {e.strerror or e}") from None
            if backend is not None:
                blocks[spec.index] = backend
                if backend.notice:
                    print(f"pyemu: warning: {backend.notice}", file=sys.stderr)
                # the description names the format found, so no other side probes
                cfg.drives[k] = replace(spec, format=backend.format)
        devices: dict[str, Chardev] = {}
        for i, spec in enumerate(cfg.serial):
            if spec != "none":
                cd = _open(spec, "-serial", opened)
                devices[f"serial{i}"] = cd.frontend(0) if isinstance(cd, MuxChardev) else cd
                if isinstance(cd, MuxChardev) and cd.monitor:
                    monitors.append(cd.frontend(1))
        if cfg.debugcon:
            devices["debugcon"] = _open(cfg.debugcon, "-debugcon", opened)
        for spec in cfg.monitor:
            if spec != "none":
                cd = _open(spec, "-monitor", opened)
                # a plain stdio backend is a mux without a monitor: the monitor is its
                # only user, so it takes the focused frontend
                monitors.append(cd.frontend(0) if isinstance(cd, MuxChardev) else cd)
        named = _named_chardevs(cfg, opened)
        try:
            machine = PcMachine(cfg, devices, blocks, named)
        except (BootError, ValueError, OSError) as e:
            raise LaunchError(str(e)) from None
        attach_tracer(machine)  # -d in_asm, exec, cpu: a block hook only when asked
        if cfg.loadvm is not None:
            _loadvm(machine, cfg.loadvm)
    except LaunchError:
        _close(opened, blocks)
        raise
    return Built(machine, opened, monitors, blocks, cfg)


def _named_chardevs(cfg: MachineConfig, opened: list[Chardev]) -> dict[str, Chardev]:
    """The -chardev backends devices name by id (chardev=ID). A device whose chardev
    this command line does not define -- one a stream's description brings -- gets a
    null backend, as a serial port does."""
    named = {cid: _open(spec, f"-chardev id={cid}", opened) for cid, spec in cfg.chardevs.items()}
    for spec in cfg.devices:
        wanted = parse_device(spec).chardev
        if wanted is not None and wanted not in named:
            named[wanted] = _open("null", f"-device {spec}", opened)
    return named


def _check_described(built: Built, desc: dict[str, Any], prefix: str = "") -> None:
    """The machine built from ``desc`` is the one it describes, object by object; if
    not, it is closed and LaunchError (StreamError without ``prefix``) lists how."""
    try:
        matches(built.machine)(desc)
    except StreamError as e:
        _close(built.opened, built.blocks)
        built.machine.cpu.close()
        if prefix:
            raise LaunchError(prefix + str(e)) from None
        raise


def _loadvm(machine, tag: str) -> None:
    from emu.monitor.commands import CommandError, execute

    try:
        execute(machine, f"loadvm {tag}")
    except CommandError as e:
        machine.cpu.close()
        raise LaunchError(f"-loadvm {tag}: {str(e).removeprefix('Error: ')}") from None


def _close(chardevs: list[Chardev], blocks: dict[int, BlockBackend]) -> None:
    """Release host resources; closing an image flushes what the guest wrote."""
    for cd in chardevs:
        cd.close()
    for backend in blocks.values():
        backend.close()


def _run(built: Built, signal_handlers: Callable[[Callable[[str], None]], None],
         servers: list[QmpServer]) -> int:
    machine, cfg, opened, monitors = built.machine, built.cfg, built.opened, built.monitors
    try:
        return _serve(machine, cfg, opened, monitors, signal_handlers, servers)
    finally:
        _close([], built.blocks)


def _serve(machine, cfg: MachineConfig, opened: list[Chardev], monitors: list[Chardev],
           signal_handlers: Callable[[Callable[[str], None]], None],
           servers: list[QmpServer]) -> int:
    for cd in opened:
        machine.add_input_source(cd)
        if isinstance(cd, MuxChardev):
            cd.frontend(1).set_notify(machine.wake)
            cd.on_quit = lambda: machine.request_shutdown(0, "C-a x", "host-ui")
    for cd in monitors:
        mon = HumanMonitor(machine, cd, echo=not isinstance(cd, SocketChardev))
        if isinstance(cd, SocketChardev):
            cd.on_connect = lambda mon=mon: machine.post(mon.greet)
        shares_console = getattr(getattr(cd, "mux", None), "monitor", False)
        if not shares_console and getattr(cd, "connected", True):
            mon.greet()
    if cfg.incoming is not None:
        machine.set_runstate("inmigrate")
    else:
        machine.set_runstate("prelaunch" if cfg.start_paused else "running")
    for server in servers:
        server.start(machine)

    def on_signal(name: str) -> None:
        machine.post(lambda: machine.request_shutdown(0, f"terminating on signal {name}",
                                                      "host-signal"))

    signal_handlers(on_signal)
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(machine.run()), name="machine",
                              daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.25)  # the main thread stays free to take signals
    finally:
        for server in servers:  # the last replies and events (SHUTDOWN) go out first
            server.close()
        added = [cd for cd in getattr(machine, "chardevs", {}).values() if cd not in opened]
        _close([*opened, *added], {})  # chardev-add's too
    log.info("exit: %s", machine.exit_reason)
    return status[0] if status else 1
