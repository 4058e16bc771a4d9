"""Compat filters of the PIIX3/PIIX4 functions."""

from typing import Any

from emu.migration.compat.filters import Add, Call, Upgrade


def _gpe_enable_new(tree: dict[str, Any]) -> None:
    tree["gpe_en"] = 0


def _gpe_enable_dropped(tree: dict[str, Any]) -> None:
    # v1 took the guest's GPE0 enable writes and dropped them: a guest's enable is
    # what v1 cannot keep, and it loses nothing there (v1 has no GPE source).
    del tree["gpe_en"]


UPGRADES = [
    # v2 makes QEMU's GPE0 block and ACPI PCI hotplug registers state; v1 had no event
    # source, so a pending event (status, PCIU, PCID) cannot go back, an enable can.
    Upgrade("piix4-pm", 1,
            layout="config:bytes[256] pm1_sts:u16 pm1_en:u16 pm1_cnt:u16 apm_cnt:u8 "
                   "apm_sts:u8",
            steps=(Add("gpe_sts", 0), Call(_gpe_enable_new, back=_gpe_enable_dropped),
                   Add("pci_up", 0), Add("pci_down", 0), Add("hotplug_bus", 0))),
]
