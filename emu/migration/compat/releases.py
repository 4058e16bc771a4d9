"""What destinations of earlier releases take: the state version of each type.

A destination of this release or later announces its versions in its ACCEPT reply
(``announcement``); one that announces nothing is release 0.1.0 (commit 8792385,
archived in releases/pyemu-0.1.0.tar.gz), whose versions are below. A source writes
each section at the destination's version (compat.downgrade_section) and refuses,
before the guest stops, a machine with a type the destination does not have.
"""

from __future__ import annotations

import json
from typing import Any

from emu import __version__
from emu.migration.compat.filters import CompatError
from emu.qom import TYPES

RELEASE_0_1_0 = {
    "PIIX3": 1, "fw_cfg_io": 1, "i440FX-pcihost": 1, "i8042": 1, "i8254": 1,
    "i8254-channel": 1, "i8259": 1, "ide-channel": 1, "ide-drive": 1, "isa-post-port": 1,
    "isa-serial": 1, "mc146818": 1, "pci-host": 1, "piix3-ide": 1, "piix4-pm": 1,
    "port92": 1, "ps2-kbd": 2, "x86-cpu": 1, "virtual-clock": 1,
}
MAX_TYPES, MAX_NAME = 1024, 64


def state_versions() -> dict[str, int]:
    """This pyemu's version of every saved type (the board's types registered)."""
    return {name: cls.STATE_VERSION for name, cls in sorted(TYPES.items()) if cls.has_state()}


def announcement() -> str:
    """What a destination says with its ACCEPT: its release and its state versions."""
    return json.dumps({"pyemu": __version__, "versions": state_versions()})


def destination_versions(text: str) -> dict[str, int]:
    """The state versions a destination announced (its ACCEPT text), or release
    0.1.0's for one that said nothing; CompatError if the text is not an announcement."""
    if not text:
        return dict(RELEASE_0_1_0)
    try:
        said: Any = json.loads(text)
    except ValueError:
        said = None
    versions = said.get("versions") if isinstance(said, dict) else None
    if not isinstance(versions, dict) or len(versions) > MAX_TYPES or not all(
            isinstance(k, str) and len(k) <= MAX_NAME and type(v) is int and 0 < v < 1 << 16
            for k, v in versions.items()):
        raise CompatError("the destination's ACCEPT does not announce its state versions")
    return versions
