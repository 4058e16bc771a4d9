"""Removable media of the PC's ATAPI drives, as QEMU's block layer exposes them: open
and close the tray, take the medium out, put another in (HMP ``change``/``eject``, QMP
``blockdev-change-medium``, ``eject``, ``blockdev-open-tray``, ``blockdev-close-tray``;
qapi/block.json for the operations and their errors).

The drive's configuration follows each change (``cfg.drives``: the image a drive
holds, "" for none), so the machine description -- a migration stream's, a savevm
file's, ``machine-export`` -- carries the disc that is in the drive now, and a
destination builds the changed machine. The tray's position is the drive's own state
(``IdeDrive.tray_open``), saved with it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from emu.devices.ide import IdeDrive
from emu.host.block import FORMATS, BlockBackend, open_image

if TYPE_CHECKING:
    from emu.machine.pc.pc import PcMachine


class MediaError(ValueError):
    """A refused operation, in QEMU's words, with the error class QMP replies with."""

    def __init__(self, text: str, error_class: str = "GenericError") -> None:
        super().__init__(text)
        self.error_class = error_class


def _find(machine: PcMachine, device: str) -> tuple[int, IdeDrive]:
    """The index in ``machine.cfg.drives`` and the drive object of drive id ``device``
    (``ide1-cd0``, or the ``id=`` of its -drive)."""
    for k, (name, _, drive) in enumerate(machine.drives()):
        if name == device:
            if not drive.is_cd:
                raise MediaError(f"Device '{device}' is not removable")
            return k, drive
    raise MediaError(f"Device '{device}' not found", "DeviceNotFound")


def open_tray(machine: PcMachine, device: str, force: bool = False) -> None:
    """Open the tray; a tray the guest locked opens only with ``force``."""
    _, drive = _find(machine, device)
    if drive.medium_locked and not drive.tray_open and not force:
        raise MediaError(f"Device '{device}' is locked and force was not specified, wait "
                         "for tray to open and try again")
    drive.set_tray(True)


def close_tray(machine: PcMachine, device: str) -> None:
    _, drive = _find(machine, device)
    drive.set_tray(False)


def remove_medium(machine: PcMachine, device: str) -> None:
    """Take the medium out of the open tray (none in it: nothing to do)."""
    k, drive = _find(machine, device)
    if not drive.tray_open:
        raise MediaError(f"Tray of device '{device}' is not open")
    spec = machine.cfg.drives[k]
    backend = machine.blocks.pop(spec.index, None)
    drive.change_medium(None)
    machine.cfg.drives[k] = replace(spec, file="")
    if backend is not None:
        backend.close()


def _open(filename: str, fmt: str | None) -> BlockBackend:
    try:
        return open_image(filename, format=fmt, readonly=True)
    except OSError as e:
        raise MediaError(f"Could not open '{filename}': {e.strerror or e}") from None


def _insert(machine: PcMachine, device: str, backend: BlockBackend) -> None:
    """Put the opened image in the open, empty tray."""
    k, drive = _find(machine, device)
    if not drive.tray_open:
        raise MediaError(f"Tray of device '{device}' is not open")
    if drive.backend is not None:
        raise MediaError(f"Device '{device}' already has a medium inserted")
    spec = machine.cfg.drives[k]
    machine.blocks[spec.index] = backend
    machine.cfg.drives[k] = replace(spec, file=backend.path, format=backend.format)
    drive.change_medium(backend)


def change_medium(machine: PcMachine, device: str, filename: str, fmt: str | None = None,
                  force: bool = False) -> None:
    """QEMU's change: open the tray, swap the medium for ``filename`` (read-only, of
    format ``fmt``, probed when None), close the tray; the guest sees a unit attention
    for the new disc. Nothing changes on an error: the image is opened before the tray
    moves."""
    if fmt is not None and fmt not in FORMATS:
        raise MediaError(f"format '{fmt}' is not supported: only {' and '.join(FORMATS)}")
    _find(machine, device)
    backend = _open(filename, fmt)
    try:
        open_tray(machine, device, force)
    except MediaError:
        backend.close()
        raise
    remove_medium(machine, device)
    _insert(machine, device, backend)
    close_tray(machine, device)


def eject(machine: PcMachine, device: str, force: bool = False) -> None:
    """QEMU's eject: open the tray and take the medium out; the tray stays open."""
    open_tray(machine, device, force)
    remove_medium(machine, device)
