"""``pyemu-state``: look into snapshot files without running a guest.

  pyemu-state show FILE            summary: machine, RAM, clock, sections
  pyemu-state dump FILE            the whole state tree as JSON (RAM summarised)
  pyemu-state diff A B             differences by object path and field, and RAM pages
  pyemu-state schema [--compare OLD.json]
                                   every type's saved fields; with --compare, the changes
                                   since OLD that old streams could not load through
A bad file is one line naming the file and the fault, and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from emu.migration.schema import compare, schema
from emu.migration.stream import PAGE, RawStream, StreamError, decode_section, read_stream
from emu.qom import TYPES


class ToolError(Exception):
    pass


def _load(path: str) -> RawStream:
    try:
        return read_stream(Path(path).read_bytes())
    except OSError as e:
        raise ToolError(f"{path}: {e.strerror}") from None
    except StreamError as e:
        raise ToolError(f"{path}: {e}") from None


def _cpu():
    from emu.cpu.x86 import X86Cpu  # decoding the CPU section needs an engine to read into

    return X86Cpu(icount=False, port_in=lambda p, s: 0, port_out=lambda p, s, v: None,
                  inta=lambda: -1)


def state_tree(raw: RawStream, path: str) -> dict[str, Any]:
    """Every section decoded against the types the description names."""
    import emu.machine.pc.pc  # noqa: F401  (registers the board's types)

    objects = {}
    for obj in raw.description.get("objects", []):
        cls = TYPES.get(obj.get("type"))
        if cls is not None:  # an unknown type's section is refused by decode_section
            objects[obj["path"]] = cls("shadow", None)
    cpu = _cpu()
    try:
        tree = {}
        for spath, type_name, version, payload in raw.sections:
            try:
                tree[spath] = decode_section(spath, type_name, version, payload, objects, cpu)
            except StreamError as e:
                raise ToolError(f"{path}: {e}") from None
        return tree
    finally:
        cpu.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _ram_summary(ram: np.ndarray) -> dict[str, int]:
    nonzero = int(ram.reshape(-1, PAGE).any(axis=1).sum())
    return {"bytes": int(ram.size), "pages": ram.size // PAGE, "nonzero_pages": nonzero}


def cmd_show(args: argparse.Namespace) -> str:
    raw = _load(args.file)
    d = raw.description
    ram = _ram_summary(raw.ram)
    lines = [f"{args.file}: pyemu {raw.emulator} stream",
             f"machine {d.get('machine')}, RAM {ram['bytes'] >> 20} MiB "
             f"({ram['nonzero_pages']} of {ram['pages']} pages in use), "
             f"virtual time {d['clock_ns'] / 1e9:.6f} s",
             f"{len(raw.sections)} state sections:"]
    for spath, type_name, version, payload in raw.sections:
        lines.append(f"  {spath:<40} {type_name:<16} v{version} {len(payload):>6} bytes")
    return "\n".join(lines)


def cmd_dump(args: argparse.Namespace) -> str:
    raw = _load(args.file)
    out = {"emulator": raw.emulator, "description": raw.description,
           "ram": _ram_summary(raw.ram), "state": state_tree(raw, args.file)}
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyemu-state", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("show").add_argument("file")
    sub.add_parser("dump").add_argument("file")
    d = sub.add_parser("diff")
    d.add_argument("a")
    d.add_argument("b")
    sub.add_parser("schema").add_argument("--compare", metavar="OLD.json")
    args = ap.parse_args(argv)
    handler = {"show": cmd_show, "dump": cmd_dump, "diff": cmd_diff, "schema": cmd_schema}
    try:
        print(handler[args.command](args))
    except ToolError as e:
        print(f"pyemu-state: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
