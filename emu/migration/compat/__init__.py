"""Compat: sections saved by an older STATE_VERSION, upgraded to this pyemu's, and
sections of this pyemu written at an older one for a destination of an earlier release.

DESIGN.md, "Visitors, formats, compat". When a type's STATE_VERSION goes from N to N+1,
the module named after its chip here declares an ``Upgrade`` (filters.py): the layout
of version N and the steps from N to N+1. ``upgrade_section`` decodes an old section
with its old layout and chains the upgrades up to the current version; the caller then
checks the tree against the current declaration like any other input. Devices never
see an old version.
"""

from __future__ import annotations

from typing import Any

from emu.migration.compat import i8042, ide, piix3
from emu.migration.compat.filters import CompatError, Upgrade
from emu.qom.stateio import visit_field
from emu.qom.visitor import BinaryReader, BinaryWriter

UPGRADES: dict[tuple[str, int], Upgrade] = {
    (u.type_name, u.from_version): u for module in (i8042, ide, piix3) for u in module.UPGRADES}


def upgrade_section(path: str, type_name: str, version: int, current: int,
                    payload: bytes | memoryview, wires: list[str]) -> dict[str, Any]:
    """A binary section of ``version`` as a tree of version ``current`` (keyed by wire
    name, which must come out as ``wires``); CompatError names what is missing."""
    if version > current:
        raise CompatError(f"{path}: state version {version} is newer than this pyemu's "
                          f"{current} for {type_name}")
    chain = [UPGRADES.get((type_name, n)) for n in range(version, current)]
    if None in chain:
        raise CompatError(f"{path}: state version {version}, this pyemu has {current} "
                          f"and no compat filter for {type_name} from v{version}")
    reader = BinaryReader(payload)
    reader.begin_struct(path)
    tree = {f.wire: visit_field(reader, f, f.fresh()) for f in chain[0].fields()}
    reader.finish()
    for up in chain:
        up.apply(tree)
    extra = sorted(set(tree) - set(wires))
    if extra:
        raise CompatError(f"{path}: field {extra[0]} left over after upgrading {type_name} "
                          f"v{version} -> v{current}")
    return tree


def downgrade_section(path: str, type_name: str, current: int, version: int,
                      tree: dict[str, Any]) -> bytes:
    """A binary section of ``version`` (older than ``current``) from a tree of this
    pyemu's state of ``type_name`` (keyed by wire name), the upgrades undone in turn;
    CompatError names a step with no way back or a value the older version cannot
    hold (the section is then not sent: the destination cannot take this machine)."""
    chain = [UPGRADES.get((type_name, n)) for n in range(version, current)]
    if version > current or None in chain:
        raise CompatError(f"{path}: no compat filter takes {type_name} from v{current} "
                          f"back to v{version}")
    tree = dict(tree)
    for up in reversed(chain):
        up.revert(tree)
    fields = chain[0].fields()
    extra = sorted(set(tree) - {f.wire for f in fields})
    if extra:
        raise CompatError(f"{path}: field {extra[0]} left over after reverting {type_name} "
                          f"v{current} -> v{version}")
    w = BinaryWriter()
    for f in fields:
        try:
            visit_field(w, f, f.type.check(tree[f.wire]))
        except (KeyError, ValueError) as e:
            raise CompatError(f"{path}/{f.wire}: v{version} cannot hold it: {e}") from None
    return bytes(w.out)


__all__ = ["UPGRADES", "CompatError", "downgrade_section", "upgrade_section"]
