"""Compat of the machine description (a stream's head, a savevm file's, a
machine-export / -readconfig file): descriptions of earlier versions brought up to
this pyemu's, so nothing that reads one sees an old layout.

The version is the description's "version" key; descriptions written before it existed
(pyemu 0.1.0) have none and are version 0.
- 0 -> 1: "version" appears. A configuration without "cpu" and "devices" comes from
  before -cpu and -device: its CPU model had every feature of "max" that guests use,
  and an isa-debug-exit sat at port F4h.
- 1 -> 2: drives have a "format" (qcow2 came); before, every image was raw.

The CPU and the virtual clock, objects of every machine's tree (``IMPLIED``), are not
listed: a description says the same of them to every release.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emu.migration.compat.filters import CompatError

DESCRIPTION_VERSION = 2


def _v0_to_v1(desc: dict[str, Any]) -> None:
    config = desc.get("config")
    if isinstance(config, dict):
        config.setdefault("cpu", "max")
        config.setdefault("devices", ["isa-debug-exit,iobase=0xf4,iosize=0x04"])


def _v1_to_v2(desc: dict[str, Any]) -> None:
    drives = desc.get("drives")
    for drive in drives.values() if isinstance(drives, dict) else ():
        if isinstance(drive, dict):
            drive.setdefault("format", "raw")
    config = desc.get("config")
    drives = config.get("drives") if isinstance(config, dict) else None
    for drive in drives if isinstance(drives, list) else ():
        if isinstance(drive, dict):
            drive.setdefault("format", "raw")


STEPS: dict[int, Callable[[dict[str, Any]], None]] = {0: _v0_to_v1, 1: _v1_to_v2}


def implied_sections(desc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """State that streams of earlier versions carry outside any section: decoded values
    by path, for a stream that lacks that section. Streams from before the clock had a
    section give virtual time only as the description's clock_ns (when the stream was
    written: the same instant for a snapshot, all they were used for then)."""
    return {"/machine/clock": ("virtual-clock", {"ns": desc["clock_ns"]})}


def upgrade_description(desc: dict[str, Any], where: str = "description") -> dict[str, Any]:
    """``desc`` (a mapping decoded from JSON) at this pyemu's DESCRIPTION_VERSION,
    changed in place; CompatError names a version it cannot read."""
    version = desc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise CompatError(f"{where}/version: {version!r} is not a description version")
    if version > DESCRIPTION_VERSION:
        raise CompatError(f"{where}/version: {version} is newer than this pyemu's "
                          f"{DESCRIPTION_VERSION}")
    for n in range(version, DESCRIPTION_VERSION):
        STEPS[n](desc)
    desc["version"] = DESCRIPTION_VERSION
    return desc
