"""The machine: object tree root, run state and the machine thread's main loop.

DESIGN.md, "Threads and time": one machine thread owns all device state. The CPU runs
in slices that end at the next timer deadline (realtime) or after the instructions
that reach it (icount); between slices the loop fires timers, hands host input to
devices, runs posted requests, and carries out resets and shutdowns. Other threads
(chardev readers, the monitor's sockets) only post requests and kick the CPU.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from emu.clock import HORIZON_NS, Clock
from emu.cpu.dump import dump_state
from emu.cpu.models import DEFAULT_MODEL, MODELS, CpuModel
from emu.cpu.state import CpuState
from emu.cpu.x86 import X86Cpu
from emu.devices.base import Device
from emu.memory.ioport import IoBus
from emu.migration.live import Hold, Migration, RunRefused
from emu.qom import Object, link, register_type, state

log = logging.getLogger("emu.machine")

# QEMU's run states: an incoming migration's destination waits in "inmigrate"; the
# source is in "finish-migrate" while it sends the last of the guest, "postmigrate" after.
RUNSTATES = ("prelaunch", "running", "paused", "shutdown", "internal-error", "inmigrate",
             "finish-migrate", "postmigrate")
# Shutdown causes that -no-shutdown turns into a pause (QEMU's shutdown action "pause"):
# the guest's own; the host's (quit, signals) always end pyemu.
GUEST_CAUSES = ("guest-shutdown", "guest-reset", "guest-panic")


@register_type("virtual-clock")
class ClockState(Object):
    """Virtual time as an object of the machine tree (``/machine/clock``), so streams,
    the offline tool, the schema and the monitor see it like any other object. The
    clock itself (emu/clock.py) is a host binding; ``ns`` is read from it before a
    save and given to it after a load. A machine reset does not turn time back."""

    STATE_VERSION = 1
    IMPLIED = "clock"

    ns = state.u64(reset=0, limit=HORIZON_NS,
                   past="the clock's horizon, about 146 years",
                   doc="virtual time, ns since the machine started (the C helper's 64-bit "
                   "host deadlines hold times up to the horizon)")

    # unbound: a detached object (the offline tool's, a test's)
    clock = link("clock", doc="the machine's virtual clock")

    def sync_state(self) -> None:
        if self.clock is not None:
            self.ns = self.clock.now_ns()

    def reset_state(self) -> None:
        self.sync_state()

    def rebuild(self) -> None:
        if self.clock is not None:
            self.clock.set_now(self.ns)


class Machine(Object):
    """Board-independent machine: CPU, clock, I/O bus, run loop. Boards subclass it."""

    TYPE_NAME = "machine"

    def __init__(self, name: str = "machine", *, icount_shift: int | None = None,
                 no_reboot: bool = False, no_shutdown: bool = False,
                 cpu_model: CpuModel = MODELS[DEFAULT_MODEL]) -> None:
        super().__init__(name)
        self.clock = Clock(icount_shift)
        self.io = IoBus()
        self.no_reboot = no_reboot
        self.no_shutdown = no_shutdown
        self.runstate = "prelaunch"
        self.exit_status: int | None = None
        self.exit_reason = ""
        self._reset_reason: str | None = None
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._input_sources: list[Any] = []  # chardevs whose input the loop pumps
        self.cpu = X86Cpu(icount=self.clock.icount, port_in=self.io.read,
                          port_out=self.io.write, inta=self.acknowledge_interrupt,
                          clock=self.clock, model=cpu_model)
        self.clock.insn_count = lambda: self.cpu.insn_count
        self.clock.shorten_slice = self._shorten_slice
        # The CPU and virtual time are the tree's first objects: a load installs them
        # before the devices, whose timers are re-armed against the loaded clock.
        CpuState("cpu", self).cpu = self.cpu
        ClockState("clock", self).clock = self.clock
        self.migration = Migration()
        self.throttle = 0  # percent of CPU time withheld (auto-converge)
        self.hold: Hold | None = None  # never two running copies of one guest
        # Told of run state changes, resets and shutdowns (QMP's events), on the thread
        # where they happen: (event name, data).
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._reset_cause = "guest-reset"

    # -- what boards provide ----------------------------------------------------------
    def acknowledge_interrupt(self) -> int:
        """The INTA cycle: the vector of the interrupt being delivered, or -1."""
        return -1

    def boot(self) -> None:
        """Put the CPU where the guest starts: the reset vector or a loaded kernel."""

    # -- requests from devices (machine thread) -------------------------------------
    # ``cause`` is QEMU's ShutdownCause as the RESET and SHUTDOWN events report it; the
    # default is the guest's own doing, host-side callers name theirs.
    def request_reset(self, reason: str, cause: str = "guest-reset") -> None:
        self._reset_reason, self._reset_cause = reason, cause
        self.cpu.request_stop()

    def request_shutdown(self, status: int, reason: str, cause: str = "guest-shutdown", *,
                         immediate: bool = False) -> None:
        """End pyemu with ``status``; with -no-shutdown a guest's cause pauses instead.
        ``immediate``: end it whatever -no-shutdown says (isa-debug-exit, as QEMU's)."""
        if self.no_shutdown and cause in GUEST_CAUSES and not immediate:
            self.post(lambda: self._pause_at_shutdown(reason, cause))  # after the slice
            return
        if self.exit_status is None:
            self.exit_status, self.exit_reason = status, reason
            self.emit("SHUTDOWN", {"guest": cause.startswith("guest"), "reason": cause})
        self.cpu.request_stop()
        self._wake.set()

    def _pause_at_shutdown(self, reason: str, cause: str) -> None:
        log.info("guest shutdown (%s): paused (-no-shutdown)", reason)
        self.emit("SHUTDOWN", {"guest": True, "reason": cause})
        self.set_runstate("shutdown")

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event, data)

    # -- requests from other threads --------------------------------------------------
    def post(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the machine thread; the Future carries its result."""
        fut: Future = Future()
        self._requests.put((fn, fut))
        self.wake()
        return fut

    def wake(self) -> None:
        """Make the machine thread look at its requests and input now."""
        self.cpu.kick()
        self._wake.set()

    def add_input_source(self, source: Any) -> None:
        """A chardev whose buffered input the loop hands to its frontend (``pump()``)."""
        self._input_sources.append(source)
        source.set_notify(self.wake)

    def remove_input_source(self, source: Any) -> None:
        self._input_sources.remove(source)

    # -- snapshots ------------------------------------------------------------------------
    def save_snapshot(self, out) -> int:
        """Write the whole machine (on the machine thread, between slices)."""
        from emu.migration.stream import write_stream

        self.check_snapshot_allowed()
        return write_stream(self, out)

    def load_snapshot(self, data: bytes,
                      before_install: Callable[[], None] | None = None) -> None:
        """Check the whole stream first (StreamError names what is wrong, and nothing has
        changed), then install it; ``before_install`` runs between the two (savevm's
        disks roll back there)."""
        from emu.migration.stream import apply_snapshot, parse_stream

        snap = parse_stream(data, self)
        if before_install is not None:
            before_install()
        apply_snapshot(self, snap)
        self.after_load()

    def check_snapshot_allowed(self) -> None:
        """Boards refuse snapshots that could not restore everything (writable disks)."""

    def after_load(self) -> None:
        """Re-drive wires that no object's rebuild() may touch, and drop stale code."""
        self.cpu.flush_tlb()
        self.cpu.uc.ctl_flush_tb()

    # -- run state ----------------------------------------------------------------------
    def set_runstate(self, state: str) -> None:
        assert state in RUNSTATES
        if state == "running":
            self.clock.start()
        else:
            self.clock.stop()
        was, self.runstate = self.runstate, state
        if (was == "running") != (state == "running"):
            self.emit("RESUME" if state == "running" else "STOP", {})

    def stop(self) -> None:
        if self.runstate == "running":
            self.set_runstate("paused")

    def cont(self, force: bool = False) -> None:
        """Run the guest (from paused, prelaunch or postmigrate), once nothing holds it;
        RunRefused says what does."""
        if self.runstate in ("paused", "prelaunch", "postmigrate"):
            self.claim(force)
            self.set_runstate("running")

    def claim(self, force: bool = False) -> None:
        """Make this process the guest's only runner: no migration handed it away, and
        its images are locked here again; RunRefused otherwise."""
        if self.hold is not None and not (force and self.hold.forceable):
            hint = " ('cont -f' runs it here if the other side certainly does not)" \
                if self.hold.forceable else ""
            raise RunRefused(self.hold.reason + hint)
        self.claim_images()
        self.hold = None

    def claim_images(self) -> None:
        """Boards lock their disk images again (a migration let go of them);
        RunRefused if another process holds one."""

    def drives(self) -> list[tuple[str, Any, Any]]:
        """Each drive of the board: its id, its configuration now, its device object."""
        return []

    def system_reset(self, reason: str = "requested", *, load_guest: bool = True) -> None:
        """Reset the CPU and every device, then ``boot()`` unless ``load_guest`` is
        False (a machine waiting for a migration stream, which brings all of RAM and
        every register: what booting would write is thrown away)."""
        log.info("machine reset: %s", reason)
        # -d cpu_reset: the state before the reset, as QEMU; at power on the engine holds
        # no guest state yet
        if reason != "power on" and log.isEnabledFor(logging.DEBUG):
            log.debug("CPU Reset (CPU 0)\n%s",
                      "\n".join(dump_state(self.cpu, fpu=True, ccop=True)))
        self.cpu.reset()  # first: devices then drive its input lines (A20, INTR)
        for dev in self.children.values():
            if isinstance(dev, Device):
                dev.reset_all()
        if load_guest:
            self.boot()

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        """The machine thread's loop; returns pyemu's exit status."""
        try:
            while self.exit_status is None:
                self._step()
        finally:
            self.cpu.close()
            for obj in self.walk():
                obj.unrealize()
        return self.exit_status

    def run_until(self, virtual_ns: int) -> None:
        """Run on this thread until virtual time reaches ``virtual_ns``, then pause. In
        icount mode that is an exact instruction: slices end on timer deadlines."""
        timer = self.clock.timer(lambda: self.set_runstate("paused"), "run-until")
        timer.mod(virtual_ns)
        self.set_runstate("running")
        while self.runstate == "running" and self.exit_status is None:
            self._step()
        timer.cancel()

    def _service(self) -> None:
        self._wake.clear()
        while True:
            try:
                fn, fut = self._requests.get_nowait()
            except queue.Empty:
                break
            try:
                fut.set_result(fn())
            except Exception as e:  # the caller sees it; the machine carries on
                fut.set_exception(e)
        for source in self._input_sources:
            source.pump()
        self._reset_if_requested()

    def reset_now(self, reason: str, cause: str) -> None:
        """On the machine thread, between slices (the monitors' system_reset): the reset
        (with -no-reboot, the exit) is done before the command answers, so the next
        command sees it, as QEMU's main loop handles the request before the monitor's
        next line."""
        self._reset_reason, self._reset_cause = reason, cause
        self._reset_if_requested()

    def _reset_if_requested(self) -> None:
        if self._reset_reason is not None:
            reason, self._reset_reason = self._reset_reason, None
            cause = self._reset_cause
            if self.no_reboot:
                self.request_shutdown(0, f"{reason} (-no-reboot)", cause)
            else:
                self.system_reset(reason)
                self.emit("RESET", {"guest": cause.startswith("guest"), "reason": cause})
                if self.runstate == "shutdown":  # after -no-shutdown's pause, as QEMU
                    self.set_runstate("prelaunch")

    def _step(self) -> None:
        self._service()
        if self.exit_status is not None:
            return
        if self.runstate != "running":
            self._wake.wait()
            return
        self.clock.run_expired()
        if self.runstate != "running" or self.exit_status is not None:
            return  # a timer stopped the machine
        self.cpu.settle_tsc()  # a loaded TSC, before idle time or a slice moves the clock
        if self.cpu.halted:
            if not self.cpu.irq_deliverable():
                self._idle()
                return
            self.cpu.halted = False
        self._run_slice()

    def _idle(self) -> None:
        """The CPU is halted with nothing to deliver: sleep until a timer or an event."""
        deadline = self.clock.next_deadline()
        if self.clock.icount:
            if deadline is not None:
                self.clock.warp_to(deadline)
            else:
                self._wake.wait()
            return
        timeout = None
        if deadline is not None:
            timeout = max(0.0, (deadline - self.clock.now_ns()) / 1e9)
        self._wake.wait(timeout)

    def _shorten_slice(self, deadline: int) -> None:
        """A device armed a timer inside the running slice: end the slice in time for it."""
        if self.clock.icount:
            self.cpu.set_budget(max(1, self.clock.insns_until(deadline)))
        else:
            self.cpu.helper.deadline(self.clock.host_deadline(deadline))

    def _run_slice(self) -> None:
        started = time.monotonic()
        self._slice()
        if self.throttle:  # give up the CPU for throttle% of the time
            self._wake.wait((time.monotonic() - started) * self.throttle / (100 - self.throttle))

    def _slice(self) -> None:
        deadline = self.clock.next_deadline()
        self.clock.slice_end = deadline if deadline is not None else 1 << 62
        try:
            if self.clock.icount:
                budget = None
                if deadline is not None:
                    budget = max(1, self.clock.insns_until(deadline))
                result = self.cpu.run(budget=budget)
            else:
                host = self.clock.host_deadline(deadline) if deadline is not None else None
                result = self.cpu.run(host_deadline_ns=host)
        finally:
            self.clock.slice_end = None
        if result.error:
            log.error("guest stopped: %s", result.error)
            self.set_runstate("internal-error")
            self.request_shutdown(1, f"internal error: {result.error}", "host-error")
        elif result.triple_fault:
            log.warning("triple fault: resetting the machine")
            self.request_reset("triple fault")


