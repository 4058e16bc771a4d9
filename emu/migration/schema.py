"""The schema of every type's saved state, and a comparison of two schemas.

The same job as QEMU's vmstate-static-checker: dump what each type saves (wire names,
types, widths, caps, STATE_VERSION) from the field declarations, and, given an older
dump, name each change that would stop an old stream from loading: a change the compat
filters cover (emu/migration/compat/, whose declared layout of the old version must be
the old dump's) is not one; and each version change the filters cannot undo, which
keeps this pyemu from sending to a destination of the old release.
"""

from __future__ import annotations

from typing import Any

from emu.migration.compat import UPGRADES
from emu.qom import TYPES, fields_of
from emu.qom.fields import FieldType
from emu.qom.visitor import Visitor


def _type_desc(t: FieldType) -> dict[str, Any]:
    desc: dict[str, Any] = {"type": t.name}
    if t.bits:
        desc["bits"], desc["signed"] = t.bits, t.signed
    if t.max_len:
        desc["max_len"] = t.max_len
    if t.elem is not None:
        desc["elem"] = _type_desc(t.elem)
    if t.bounded:
        desc["bounded"] = True
    if t.members:
        desc["members"] = _fields(t.members)
    if t.limit is not None:
        desc["limit"] = t.limit
    return desc


def _fields(fields: Any) -> list[dict[str, Any]]:
    out = []
    for f in fields:
        d = dict(name=f.wire, doc=f.doc, **_type_desc(f.type))
        if f.optional:
            d["optional"] = True
        out.append(d)
    return out


class _Recorder(Visitor):
    """A loading visitor that decodes nothing: it notes each value a type's visit asks
    for, in the shape ``_fields`` gives declared fields, so a type whose state is an
    imperative visit (the CPU's) has a schema too."""

    saving = False

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []
        self._outer: list[list[dict[str, Any]]] = []

    def begin_struct(self, name: str) -> None:
        super().begin_struct(name)
        members: list[dict[str, Any]] = []
        self.fields.append({"name": name, "doc": "", "type": "struct", "members": members})
        self._outer.append(self.fields)
        self.fields = members

    def end_struct(self) -> None:
        super().end_struct()
        self.fields = self._outer.pop()

    def _note(self, name: str, **desc: Any) -> None:
        self.fields.append({"name": name, "doc": "", **desc})

    def uint(self, name: str, value: int, bits: int) -> int:
        self._note(name, type=f"u{bits}", bits=bits, signed=False)
        return 0

    def sint(self, name: str, value: int, bits: int) -> int:
        self._note(name, type=f"i{bits}", bits=bits, signed=True)
        return 0

    def boolean(self, name: str, value: bool) -> bool:
        self._note(name, type="bool")
        return False

    def blob(self, name: str, value: bytes, max_len: int) -> bytes:
        self._note(name, type="bytes", max_len=max_len)
        return bytes(max_len)

    def text(self, name: str, value: str, max_len: int) -> str:
        self._note(name, type="str", max_len=max_len)
        return ""

    def uints(self, name: str, values: list[int], bits: int, signed: bool,
              max_len: int) -> list[int]:
        elem = {"type": f"{'i' if signed else 'u'}{bits}", "bits": bits, "signed": signed}
        self._note(name, type="array", max_len=max_len, elem=elem)
        return [0] * max_len


def type_schema(cls: type) -> dict[str, Any]:
    declared = fields_of(cls, "state")
    if declared:
        return {"version": cls.STATE_VERSION, "fields": _fields(declared)}
    recorder = _Recorder()
    cls.visit_values(recorder)
    return {"version": cls.STATE_VERSION, "fields": recorder.fields}


def schema() -> dict[str, Any]:
    """Every registered type with saved state, by type name (the CPU and the virtual
    clock among them)."""
    return {name: type_schema(cls) for name, cls in sorted(TYPES.items()) if cls.has_state()}


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per change that makes ``old`` streams unloadable as they are, or that
    keeps this pyemu from writing what the old release reads."""
    lines = []
    for name in sorted(old):
        if name not in new:
            lines.append(f"{name}: type removed")
            continue
        a, b = old[name], new[name]
        if b["version"] < a["version"]:
            lines.append(f"{name}: STATE_VERSION went back from {a['version']} to "
                         f"{b['version']}")
        lines += [f"{name}: v{n} -> v{n + 1} cannot go back to v{n}: {why}"
                  for n in range(a["version"], b["version"])
                  if (up := UPGRADES.get((name, n))) is not None and (why := up.one_way)]
        changes = _field_changes(name, a["fields"], b["fields"])
        if changes and b["version"] == a["version"]:
            lines += [f"{c} (STATE_VERSION {a['version']} unchanged)" for c in changes]
        elif changes:
            gap = _compat_gap(name, a, b["version"])
            lines += [f"{c} (version {a['version']} -> {b['version']}: {gap})"
                      for c in changes if gap]
    return lines


def _compat_gap(type_name: str, old: dict[str, Any], version: int) -> str | None:
    """What the compat filters lack to load ``old`` as ``version``, or None."""
    for n in range(old["version"], version):
        up = UPGRADES.get((type_name, n))
        if up is None:
            return f"needs a compat filter from v{n}"
        if n == old["version"] and up.layout.split() != [
                f"{'?' if f.get('optional') else ''}{f['name']}:{_short(f)}"
                for f in old["fields"]]:
            return f"the compat layout of v{n} is not the old schema's"
    return None


def _field_changes(type_name: str, old: list[dict], new: list[dict]) -> list[str]:
    a = {f["name"]: f for f in old}
    b = {f["name"]: f for f in new}
    out = [f"{type_name}/{n}: field removed" for n in a if n not in b]
    out += [f"{type_name}/{n}: field added" for n in b if n not in a]
    for n in a.keys() & b.keys():
        fa, fb = _undocumented(a[n]), _undocumented(b[n])
        if fa != fb:
            out.append(f"{type_name}/{n}: {_short(fa)} -> {_short(fb)}")
    if not out and [f["name"] for f in old] != [f["name"] for f in new]:
        out.append(f"{type_name}: fields reordered")
    return sorted(out)


def _undocumented(f: Any) -> Any:
    """A dumped field without its docs, at every depth: docs may change freely."""
    if isinstance(f, dict):
        return {k: _undocumented(v) for k, v in f.items() if k != "doc"}
    if isinstance(f, list):
        return [_undocumented(v) for v in f]
    return f


def _short(f: dict[str, Any]) -> str:
    """A dumped field's type in the notation of ``FieldType.spec``."""
    if "bits" in f:
        return f"{'i' if f['signed'] else 'u'}{f['bits']}"
    if "elem" in f:
        return f"{_short(f['elem'])}[{'..' if f.get('bounded') else ''}{f['max_len']}]"
    if "members" in f:
        return "{" + " ".join(f"{m['name']}:{_short(m)}" for m in f["members"]) + "}"
    return f"{f['type']}[{f['max_len']}]" if "max_len" in f else f["type"]
