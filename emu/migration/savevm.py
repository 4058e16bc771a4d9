"""savevm, loadvm, delvm and info snapshots: the machine's state and its disks' together,
as QEMU's migration/savevm.c pairs them.

Where a snapshot lives depends on the machine's writable disks:
- none (read-only or no disks): the snapshot directory (snapshot.py), one file a tag;
- all qcow2 (or under -snapshot, whose overlays are qcow2): each writable disk gets an
  internal snapshot of the tag, and the machine's
  state goes into the first one's VM state area (qcow2 "Snapshots": vm_state_size and
  the area after the guest disk), as QEMU does. The image then holds all a loadvm
  needs, travels as one file, and ``qemu-img snapshot -l`` lists what pyemu saved
  with its VM size; ``qemu-img snapshot -a`` does to the disk what loadvm does to it;
- any writable raw image: refused, naming it (a raw image cannot hold the disk as it
  was at the snapshot, so a later loadvm would pair old RAM with newer disk contents).

Order: savevm writes the state into the first disk's snapshot, then snapshots the
others, and takes back what it made if any step fails. loadvm reads and checks the
whole state first (nothing changes if it is refused), then rolls each disk back, then
installs the state.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from emu.migration import snapshot
from emu.migration.snapshot import SnapshotError


@dataclass(frozen=True)
class Listed:
    """One row of ``info snapshots``."""

    tag: str
    vm_size: int  # bytes of machine state
    date: float  # seconds since the epoch
    vm_clock_ns: int | None  # the guest's virtual clock (internal snapshots)


def writable_disks(machine: Any) -> list[tuple[str, Any]]:
    """The qcow2 images a snapshot must hold, by drive id; ValueError (the board's,
    naming the drive) if another writable disk cannot."""
    machine.check_snapshot_allowed()
    return [(name, backend.qcow2) for name, backend in machine.drive_backends().items()
            if not backend.readonly and backend.qcow2 is not None]


def save(machine: Any, tag: str) -> None:
    """savevm ``tag``: the machine and its writable disks, whole or not at all."""
    snapshot.snapshot_path(tag)  # the same tag rules wherever it is kept
    disks = writable_disks(machine)
    if not disks:
        snapshot.save(tag, machine.save_snapshot)
        return
    state = io.BytesIO()
    machine.save_snapshot(state)
    clock = machine.clock.now_ns()
    made: list[Any] = []
    for i, (name, image) in enumerate(disks):
        try:
            if any(s.name == tag for s in image.snapshots):
                image.delete_snapshot(tag)  # QEMU's savevm replaces a tag
            image.create_snapshot(tag, vmstate=state.getvalue() if i == 0 else b"",
                                  vm_clock_ns=clock)
        except (OSError, ValueError) as e:
            for done in made:
                done.delete_snapshot(tag)
            raise SnapshotError(f"snapshot '{tag}' cannot be saved on drive {name}: "
                                f"{e}") from None
        made.append(image)


def load(machine: Any, tag: str) -> None:
    """loadvm ``tag``; on any refusal the machine and its disks are unchanged."""
    disks = writable_disks(machine)
    if not disks:
        data = snapshot.read(tag)
        machine.load_snapshot(data)
        return
    for name, image in disks:
        if not any(s.name == tag for s in image.snapshots):
            raise SnapshotError(f"Snapshot '{tag}' does not exist on drive {name}")
    data = disks[0][1].read_vmstate(tag)
    if not data:
        raise SnapshotError(f"snapshot '{tag}' of drive {disks[0][0]} holds no machine "
                            "state (a disk-only snapshot, as qemu-img snapshot -c makes)")

    def roll_back_disks() -> None:
        for _, image in disks:
            image.apply_snapshot(tag)

    machine.load_snapshot(data, before_install=roll_back_disks)


def delete(machine: Any, tag: str) -> None:
    """delvm ``tag``: from every disk that has it, else from the snapshot directory."""
    disks = writable_disks(machine)
    if not disks:
        snapshot.delete(tag)
        return
    holders = [image for _, image in disks if any(s.name == tag for s in image.snapshots)]
    if not holders:
        raise SnapshotError(f"snapshot '{tag}' not found")
    for image in holders:
        image.delete_snapshot(tag)


def listing(machine: Any) -> list[Listed]:
    """The snapshots a loadvm on this machine could restore."""
    disks = writable_disks(machine)
    if not disks:
        return [Listed(tag, st.st_size, st.st_mtime, None)
                for tag, st in snapshot.list_snapshots()]
    others = [{s.name for s in image.snapshots} for _, image in disks[1:]]
    return [Listed(s.name, s.vm_state_size, s.date_sec + s.date_nsec / 1e9, s.vm_clock_ns)
            for s in disks[0][1].snapshots
            if s.vm_state_size and all(s.name in names for names in others)]


def clock_text(ns: int) -> str:
    """QEMU's VM CLOCK column: hours:minutes:seconds.milliseconds."""
    ms = ns // 1_000_000
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
