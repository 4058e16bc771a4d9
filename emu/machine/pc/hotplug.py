"""Run-time changes to the pc board's devices and their host backends, as QEMU's
monitor makes them (qapi/qdev.json ``device_add``/``device_del``, qapi/char.json
``chardev-add``/``chardev-remove``; HMP and QMP both call these).

PCI hotplug follows QEMU's ``-M pc`` (ACPI PCI hotplug on the PIIX4, piix3.py):
``device_add`` realizes the card, puts it on bus 0 and tells the guest (PCIU, GPE0);
``device_del`` only asks the guest (PCID): the card goes when the guest ejects its slot
(B0EJ, through the DSDT's _EJ0), and then DEVICE_DELETED is emitted. A guest that never
answers keeps the card, as on QEMU.

The machine's configuration follows every change (``cfg.devices``, canonical specs;
plug.py), so ``machine-export``, savevm files and a migration's destination build the
machine as it is now. Chardevs are host bindings: ``chardevs`` (id -> Chardev) is the
registry launch opened from -chardev and this module adds to; it is never state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emu.host.chardev import Chardev, chardev_option, parse_chardev
from emu.machine.pc.plug import MAX_DEVICES, DeviceOption, is_pci, make_device, parse_device, place

if TYPE_CHECKING:
    from emu.devices.base import Device
    from emu.machine.pc.pc import PcMachine


class HotplugError(ValueError):
    """A refused change, in QEMU's words, with the error class QMP replies with."""

    def __init__(self, text: str, error_class: str = "GenericError") -> None:
        super().__init__(text)
        self.error_class = error_class


def device_add(machine: PcMachine, spec: str) -> Device:
    """Plug the device ``spec`` describes (-device syntax) into the running machine."""
    _not_migrating(machine, "device_add")
    try:
        option = parse_device(spec)
    except ValueError as e:
        raise HotplugError(str(e)) from None
    if option.kind.bus != "PCI":
        raise HotplugError(f"Bus 'isa.0' does not support hotplugging ({option.driver})")
    if option.id is not None and option.id in machine.children:
        raise HotplugError(f"Duplicate device ID '{option.id}'")
    if len(machine.cfg.devices) >= MAX_DEVICES:
        raise HotplugError(f"pyemu plugs at most {MAX_DEVICES} devices")
    try:
        option = place(option, {f.devfn for f in machine.pci.functions()})
    except ValueError as e:
        raise HotplugError(str(e)) from None
    dev = plug(machine, option, bound_chardev(machine, option))
    dev.realize_all(machine)
    dev.reset_all()
    machine.pci.plug(dev)  # type: ignore[arg-type]
    machine.pm.request_plug(option.devfn >> 3)  # type: ignore[operator]
    return dev


def _not_migrating(machine: PcMachine, command: str) -> None:
    # the description a destination builds from has been sent: the machine must stay
    # the one it describes until the migration ends (QEMU refuses the same)
    if machine.migration.active():
        raise HotplugError(f"{command} not allowed while migrating")


def plug(machine: PcMachine, option: DeviceOption, chardev: Chardev | None) -> Device:
    """Create a placed device as the machine's child and record its spec."""
    dev = make_device(machine, option, chardev)
    machine.plugged[dev.name] = option
    machine.cfg.devices.append(option.canonical())
    return dev


def bound_chardev(machine: PcMachine, option: DeviceOption) -> Chardev | None:
    """The registry's chardev ``option`` names, if free; HotplugError otherwise."""
    if option.chardev is None:
        return None
    where = f"Property '{option.driver}.chardev'"
    cd = machine.chardevs.get(option.chardev)
    if cd is None:
        raise HotplugError(f"{where} can't find value '{option.chardev}'")
    if _user(machine, cd) is not None:
        raise HotplugError(f"{where} can't take value '{option.chardev}', it's in use")
    return cd


def _user(machine: PcMachine, cd: Chardev) -> Any:
    return next((o for o in machine.walk() if getattr(o, "chardev", None) is cd), None)


def device_del(machine: PcMachine, name: str) -> None:
    """Ask the guest to eject the device with id (or QOM path) ``name``."""
    _not_migrating(machine, "device_del")
    try:
        dev = machine.resolve(name) if name.startswith("/") else machine.children[name]
    except KeyError:
        raise HotplugError(f"Device '{name}' not found", "DeviceNotFound") from None
    if dev.name not in machine.plugged or not is_pci(dev):
        raise HotplugError(f"Device '{name}' does not support hotplugging")
    machine.pm.request_unplug(dev.devfn >> 3)  # type: ignore[attr-defined]


def eject_slot(machine: PcMachine, slot: int) -> None:
    """The guest ejected PCI ``slot``: its plugged functions go (DEVICE_DELETED)."""
    for dev in [f for f in machine.pci.functions() if f.devfn >> 3 == slot]:
        if dev.name not in machine.plugged:
            continue  # the chipset's functions stay
        _unplug(machine, dev)
        machine.emit("DEVICE_DELETED", {"device": dev.name, "path": dev.path})


def _unplug(machine: PcMachine, dev: Any) -> None:
    option = machine.plugged.pop(dev.name)
    machine.cfg.devices.remove(option.canonical())
    machine.pci.unplug(dev)
    for obj in reversed(list(dev.walk())):
        obj.unrealize()
    del machine.children[dev.name]
    machine.piix3.route_intx()


def chardev_add(machine: PcMachine, text: str) -> str:
    """Open a chardev from -chardev syntax into the registry; returns its id."""
    try:
        chardev_id, spec, mux = chardev_option(text)
    except ValueError as e:
        raise HotplugError(f"chardev-add {text}: {e}") from None
    if mux:
        raise HotplugError("chardev-add: mux=on needs a monitor, which a hot-added chardev "
                           "cannot give")
    if chardev_id in machine.chardevs:
        raise HotplugError(f"attempt to add duplicate property '{chardev_id}' to object "
                           "(type 'container')")
    try:
        cd = parse_chardev(spec)
    except (ValueError, OSError) as e:
        raise HotplugError(f"chardev '{chardev_id}': {e}") from None
    machine.chardevs[chardev_id] = cd
    machine.add_input_source(cd)
    return chardev_id


def chardev_remove(machine: PcMachine, chardev_id: str) -> None:
    cd = machine.chardevs.get(chardev_id)
    if cd is None:
        raise HotplugError(f"Chardev '{chardev_id}' not found")
    if _user(machine, cd) is not None:
        raise HotplugError(f"Chardev '{chardev_id}' is busy")
    del machine.chardevs[chardev_id]
    machine.remove_input_source(cd)
    cd.close()
