"""``pyemu-state``: look into snapshot files without running a guest.

  pyemu-state show FILE [TAG]      summary: machine, RAM, clock, sections, the images
                                   its drives use; a qcow2 image: its snapshots, or
                                   with TAG the machine state savevm kept in it
  pyemu-state dump FILE [TAG] [--json] [--ram]
                                   the whole state tree as JSON (RAM summarised unless
                                   --ram: then every page in use, as hex)
  pyemu-state diff A B             differences by object path and field, and RAM pages
  pyemu-state schema [--compare OLD.json]
                                   every type's saved fields; with --compare, the changes
                                   since OLD that old streams could not load through
  pyemu-state upgrade FILE OUT     FILE with every section at this pyemu's versions
  pyemu-state set FILE PATH=VALUE... OUT
                                   FILE with fields changed, e.g. /machine/cpu/rax=0x10
A bad file or edit is one line naming the file and the fault, and exit status 1; OUT is
written whole or not at all.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from emu.host import qcow2
from emu.memory import hostram
from emu.migration.schema import compare, schema
from emu.migration.stream import (
    PAGE,
    RawStream,
    StreamError,
    decode_section,
    read_stream,
    write_parts,
)
from emu.qom import TYPES, fields_of, implied_objects
from emu.qom.visitor import BinaryWriter, DecodeError, TreeReader


class ToolError(Exception):
    pass


def _load(path: str, tag: str | None = None) -> RawStream:
    """The stream in ``path``: a snapshot file, or snapshot ``tag`` of a qcow2 image."""
    try:
        if _is_image(path):
            data = _vmstate(path, tag)
        elif tag is not None:
            raise ToolError(f"{path}: not a qcow2 image, so it has no snapshot {tag!r}")
        else:
            data = Path(path).read_bytes()
        return read_stream(data)
    except OSError as e:
        raise ToolError(f"{path}: {e.strerror or e}") from None
    except StreamError as e:
        raise ToolError(f"{path}: {e}") from None


def _is_image(path: str) -> bool:
    try:
        return qcow2.is_qcow2(path)
    except OSError as e:
        raise ToolError(f"{path}: {e.strerror}") from None


def _vmstate(path: str, tag: str | None) -> bytes:
    with qcow2.Qcow2Image(path, readonly=True) as image:  # shared lock: not while written
        names = [sn.name for sn in image.snapshots if sn.vm_state_size]
        if tag is None or tag not in names:
            has = f"its snapshots with machine state: {', '.join(names)}" if names else \
                "it has no snapshot with machine state"
            what = "name a snapshot" if tag is None else f"no snapshot {tag!r} with machine state"
            raise ToolError(f"{path}: a qcow2 image: {what}; {has}")
        return image.read_vmstate(tag)


def _image_snapshots(path: str) -> str:
    with qcow2.Qcow2Image(path, readonly=True) as image:
        rows = [f"{path}: qcow2 image, {image.size} bytes, {len(image.snapshots)} snapshots"]
        for sn in image.snapshots:
            date = datetime.datetime.fromtimestamp(sn.date_sec).strftime("%Y-%m-%d %H:%M:%S")
            state = f"machine state {sn.vm_state_size} bytes" if sn.vm_state_size else \
                "disk only"
            rows.append(f"  {sn.id:>3} {sn.name:<24} {date}  {state}")
        return "\n".join(rows)


class Sections:
    """A file's sections decoded against this pyemu's types (through the compat filters),
    and encoded back; each type visits its own (the CPU's is an imperative visit)."""

    def __init__(self, raw: RawStream, path: str) -> None:
        import emu.machine.pc.pc  # noqa: F401  (registers the board's types)

        self.raw, self.file = raw, path
        self.types = {**implied_objects(), **{
            o["path"]: TYPES[o["type"]] for o in raw.description.get("objects", [])
            if isinstance(o, dict) and isinstance(o.get("path"), str)
            and o.get("type") in TYPES}}  # an unknown type's section is refused

    def close(self) -> None:
        """Nothing is held open (kept so callers can use ``with``)."""

    def __enter__(self) -> Sections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trees(self) -> dict[str, dict[str, Any]]:
        """Every section's state by wire name, in stream order."""
        out = {}
        for spath, type_name, version, payload in self.raw.sections:
            try:
                values = decode_section(spath, type_name, version, payload, self.types)
            except DecodeError as e:
                raise ToolError(f"{self.file}: {e}") from None
            fields = fields_of(self.types[spath], "state")
            out[spath] = {f.wire: values[f.attr] for f in fields} if fields else values
        return out

    def encode(self, trees: dict[str, dict[str, Any]]) -> list[tuple[str, str, int, bytes]]:
        """Sections at this pyemu's versions from trees; DecodeError names a bad value."""
        out = []
        for spath, tree in trees.items():
            cls = self.types[spath]
            reader = TreeReader({spath: tree})
            reader.begin_struct(spath)
            w = BinaryWriter()
            cls.visit_values(w, cls.visit_values(reader))
            out.append((spath, cls.TYPE_NAME, cls.STATE_VERSION, bytes(w.out)))
        return out


def state_tree(raw: RawStream, path: str) -> dict[str, Any]:
    """Every section decoded against the types the description names."""
    with Sections(raw, path) as sections:
        return sections.trees()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _ram_summary(ram: np.ndarray) -> dict[str, int]:
    nonzero = int(hostram.nonzero(ram).sum())  # pages never touched are not read
    return {"bytes": int(ram.size), "pages": ram.size // PAGE, "nonzero_pages": nonzero}


def _drive_lines(d: dict[str, Any]) -> list[str]:
    """The drives a description names: each image's format, mode and size, and its file
    where the description says it (a migration stream's configuration; a snapshot's
    drives are those of the machine it is loaded into)."""
    config = d.get("config") if isinstance(d.get("config"), dict) else {}
    files = {x.get("id"): x.get("file") for x in config.get("drives", [])
             if isinstance(x, dict)} if isinstance(config.get("drives"), list) else {}
    drives = d.get("drives") if isinstance(d.get("drives"), dict) else {}
    lines = []
    for name, drive in drives.items():
        if not isinstance(drive, dict):
            continue
        mode = "read-only" if drive.get("readonly") else "snapshot" if drive.get(
            "snapshot") else "read-write"
        where = f"{files[name]} " if files.get(name) else ""
        lines.append(f"  {name}: {where}({drive.get('format')}, {mode}, "
                     f"{drive.get('size')} bytes)")
    return [f"{len(lines)} drives:", *lines] if lines else []


def cmd_show(args: argparse.Namespace) -> str:
    if args.tag is None and _is_image(args.file):
        try:
            return _image_snapshots(args.file)
        except OSError as e:
            raise ToolError(f"{args.file}: {e.strerror or e}") from None
    raw = _load(args.file, args.tag)
    d = raw.description
    ram = _ram_summary(raw.ram)
    lines = [f"{args.file}: pyemu {raw.emulator} stream",
             f"machine {d.get('machine')}, RAM {ram['bytes'] >> 20} MiB "
             f"({ram['nonzero_pages']} of {ram['pages']} pages in use), "
             f"virtual time {d['clock_ns'] / 1e9:.6f} s",
             f"{len(raw.sections)} state sections:"]
    for spath, type_name, version, payload in raw.sections:
        lines.append(f"  {spath:<40} {type_name:<16} v{version} {len(payload):>6} bytes")
    return "\n".join(lines + _drive_lines(d))


def cmd_dump(args: argparse.Namespace) -> str:
    raw = _load(args.file, args.tag)
    ram: dict[str, Any] = _ram_summary(raw.ram)
    if args.ram:  # every page in use, by page number, as hex
        pages = raw.ram.reshape(-1, PAGE)
        ram["pages_in_use"] = {str(i): pages[i].tobytes().hex()
                               for i in np.flatnonzero(hostram.nonzero(raw.ram)).tolist()}
    out = {"emulator": raw.emulator, "description": raw.description,
           "ram": ram, "state": state_tree(raw, args.file)}
    return json.dumps(_jsonable(out), indent=1, sort_keys=True)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}" if prefix else k))
        return out
    return {prefix: tree}


def cmd_diff(args: argparse.Namespace) -> str:
    a, b = _load(args.a), _load(args.b)
    fa = _flatten(_jsonable(state_tree(a, args.a)))
    fb = _flatten(_jsonable(state_tree(b, args.b)))
    lines = [f"{k}: {fa.get(k, '(absent)')} -> {fb.get(k, '(absent)')}"
             for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]
    if a.ram.size != b.ram.size:
        lines.append(f"ram: {a.ram.size} bytes -> {b.ram.size} bytes")
    else:
        pages = a.ram.reshape(-1, PAGE) != b.ram.reshape(-1, PAGE)
        changed = int(pages.any(axis=1).sum())
        if changed:
            lines.append(f"ram: {changed} pages differ")
    return "\n".join(lines) if lines else "no differences"


def cmd_schema(args: argparse.Namespace) -> str:
    import emu.machine.pc.pc  # noqa: F401

    now = schema()
    if args.compare is None:
        return json.dumps(now, indent=1)
    try:
        old = json.loads(Path(args.compare).read_text())
    except (OSError, ValueError) as e:
        raise ToolError(f"{args.compare}: {e}") from None
    lines = compare(old, now)
    return "\n".join(lines) if lines else "compatible: no changes old streams would trip on"


def _write(out: str, raw: RawStream, sections: list[tuple[str, str, int, bytes]]) -> int:
    """Write OUT whole (a temporary file renamed into place) or not at all."""
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            n = write_parts(f, raw.description, raw.ram, sections)
        os.replace(tmp, target)
        return n
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ToolError(f"{out}: {e.strerror}") from None


def cmd_upgrade(args: argparse.Namespace) -> str:
    raw = _load(args.file)
    with Sections(raw, args.file) as sections:
        old = {p: (t, v) for p, t, v, _ in raw.sections}
        new = sections.encode(sections.trees())
    changed = [f"  {p}: {old[p][0]} v{old[p][1]} -> {t} v{v}" for p, t, v, _ in new
               if old[p] != (t, v)]
    n = _write(args.out, raw, new)
    return "\n".join([f"{args.out}: {n} bytes, {len(changed)} sections upgraded", *changed])


def _parse_value(text: str, current: Any, where: str) -> Any:
    """VALUE in the form of the field's current value: integers in any base Python reads
    (0x10, 0b101), true/false, hex for bytes, comma-separated integers for arrays."""
    try:
        if isinstance(current, bool):
            return {"true": True, "on": True, "1": True,
                    "false": False, "off": False, "0": False}[text.lower()]
        if isinstance(current, int):
            return int(text, 0)
        if isinstance(current, bytes):
            return bytes.fromhex(text)
        if isinstance(current, list):
            return [int(x, 0) for x in text.split(",")] if text else []
        if isinstance(current, str):
            return text
    except (KeyError, ValueError):
        pass
    raise ToolError(f"{where}: {text!r} is not a value of this field "
                    f"({type(current).__name__})")


def _assign(trees: dict[str, dict[str, Any]], item: str) -> None:
    path, eq, text = item.partition("=")
    if not eq:
        raise ToolError(f"{item}: expected PATH=VALUE")
    section = max((p for p in trees if path.startswith(p + "/")), key=len, default=None)
    if section is None:
        raise ToolError(f"{path}: no state section holds this path")
    node: Any = trees[section]
    keys = path[len(section) + 1:].split("/")
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict) or keys[-1] not in node or isinstance(node[keys[-1]], dict):
        raise ToolError(f"{path}: no such field")
    node[keys[-1]] = _parse_value(text, node[keys[-1]], path)


def cmd_set(args: argparse.Namespace) -> str:
    *assignments, out = args.items
    if not assignments:
        raise ToolError("set: give at least one PATH=VALUE and then OUT")
    raw = _load(args.file)
    with Sections(raw, args.file) as sections:
        trees = sections.trees()
        for item in assignments:
            _assign(trees, item)
        try:
            new = sections.encode(trees)
        except DecodeError as e:
            raise ToolError(str(e)) from None
    n = _write(out, raw, new)
    return f"{out}: {n} bytes, {len(assignments)} fields set"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyemu-state", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show")
    show.add_argument("file")
    show.add_argument("tag", nargs="?", help="a snapshot of a qcow2 image")
    dump = sub.add_parser("dump")
    dump.add_argument("file")
    dump.add_argument("tag", nargs="?", help="a snapshot of a qcow2 image")
    dump.add_argument("--json", action="store_true", help="JSON (the only format)")
    dump.add_argument("--ram", action="store_true", help="include every page in use")
    d = sub.add_parser("diff")
    d.add_argument("a")
    d.add_argument("b")
    sub.add_parser("schema").add_argument("--compare", metavar="OLD.json")
    u = sub.add_parser("upgrade")
    u.add_argument("file")
    u.add_argument("out")
    st = sub.add_parser("set")
    st.add_argument("file")
    st.add_argument("items", nargs="+", metavar="PATH=VALUE... OUT")
    args = ap.parse_args(argv)
    handler = {"show": cmd_show, "dump": cmd_dump, "diff": cmd_diff, "schema": cmd_schema,
               "upgrade": cmd_upgrade, "set": cmd_set}
    try:
        print(handler[args.command](args))
    except ToolError as e:
        print(f"pyemu-state: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
