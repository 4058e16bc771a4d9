"""The machine configuration a stream carries: every value is checked by the rules of the
option that sets it on the command line, before anything is built, with one line naming
the field (issue 15, finding 5: an empty boot order and a RAM size beyond the host killed
a bare destination's incoming thread with IndexError and MemoryError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emu import cli
from emu.machine import config
from emu.machine.config import MachineConfig, from_stream, to_stream
from emu.migration.compat.description import DESCRIPTION_VERSION, upgrade_description

KERNEL = str(Path(__file__).resolve().parents[1] / "guests" / "build" / "hello.elf")
GIB = 1 << 30


def description(**changes: object) -> dict[str, object]:
    """A source's configuration as a stream carries it, with ``changes``."""
    cfg = MachineConfig(kernel=KERNEL, serial=["null"])
    return dict(to_stream(cfg), **changes)


def refusal(desc: object) -> str:
    with pytest.raises(ValueError) as refused:
        from_stream(desc, MachineConfig(incoming="tcp:127.0.0.1:4444"))
    assert "\n" not in str(refused.value)
    return str(refused.value)


@pytest.fixture
def host_of_16_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "physical_memory", lambda: 16 * GIB)


def test_a_valid_configuration_comes_back_as_it_went() -> None:
    cfg = from_stream(description(boot_order="dc", rtc_base="2006-06-17", icount_shift=3),
                      MachineConfig())
    assert (cfg.kernel, cfg.boot_order, cfg.rtc_base, cfg.icount_shift, cfg.serial) == (
        KERNEL, "dc", "2006-06-17", 3, ["null"])


@pytest.mark.parametrize("changes, message", [
    ({"boot_order": ""}, "description/config/boot_order: empty boot order"),
    ({"boot_order": "cx"}, "description/config/boot_order: invalid boot device for PC: 'x'"),
    ({"boot_order": "cdnc"}, "description/config/boot_order: too many boot devices"),
    ({"rtc_base": "yesterday"}, "description/config/rtc_base: invalid RTC base 'yesterday'"),
    ({"rtc_base": "2006-02-30"}, "description/config/rtc_base: invalid RTC base"),
    ({"machine": "q35"}, "description/config/machine: unsupported machine type 'q35'"),
    ({"icount_shift": 11}, "description/config/icount_shift: shift must be 0-10"),
    ({"icount_shift": -1}, "description/config/icount_shift: shift must be 0-10"),
    ({"ram_size": 1 << 20}, "description/config/ram_size: at least 2 MiB of RAM is needed"),
    ({"ram_size": (2 << 20) + 1}, "description/config/ram_size: 2097153 bytes is not a whole "
                                  "number of 4 KiB pages"),
    ({"ram_size": 64 * GIB}, "description/config/ram_size: 64 GiB is more than this host's "
                             "14 GiB"),
    ({"ram_size": 1 << 80}, "description/config/ram_size: more than 64 GiB of RAM is not "
                            "supported"),
    ({"append": "x" * 5000}, "description/config/append: not a usable string"),
    ({"append": "\u00e9" * 2049}, "description/config/append: not a usable string"),  # bytes
    ({"append": "\ud800"}, "description/config/append: not a usable string"),
    ({"drives": [{"id": "a", "file": "x", "index": 0, "media": "disk", "readonly": True,
                  "snapshot": False, "format": "raw"}] * 2},
     "description/config/drives[1]/id: 'a' is not a name of its own"),
    ({"drives": [{"id": "a\nb", "file": "x", "index": 0, "media": "disk",
                  "readonly": True, "snapshot": False, "format": "raw"}]},
     "description/config/drives[0]/id"),
    ({"drives": [{"id": i, "file": "x", "index": 1, "media": "disk", "readonly": True,
                  "snapshot": False, "format": "raw"} for i in ("a", "b")]},
     "description/config/drives: -drive index=1: used by x and x"),
    ({"drives": [{"id": "a", "file": "x", "index": 0, "media": "disk", "readonly": True,
                  "snapshot": False, "format": "vmdk"}]},
     "description/config/drives[0]/format: 'vmdk' is not one of raw, qcow2"),
    ({"drives": [{"id": "a", "file": "x", "index": 0, "media": "disk", "readonly": True,
                  "snapshot": False}]}, "description/config/drives[0]/format: None is not a str"),
], ids=lambda v: "-".join(v) if isinstance(v, dict) else "")
def test_a_value_its_option_would_refuse_is_refused_naming_the_field(host_of_16_gib,
                                                                     changes, message):
    assert refusal(description(**changes)).startswith(message)


def test_the_host_ram_check_is_one_for_dash_m_and_the_stream(host_of_16_gib) -> None:
    """-m and a stream's RAM size say the same about what this host can give: its
    physical memory less an eighth."""
    with pytest.raises(cli.UsageError) as refused:
        cli.parse_args(["-m", "64G", "-kernel", KERNEL])
    assert str(refused.value) == "-m 64G: invalid value: 64 GiB is more than this host's 14 GiB"
    assert refusal(description(ram_size=64 * GIB)) == \
        "description/config/ram_size: 64 GiB is more than this host's 14 GiB"
    assert cli.parse_args(["-m", "14G", "-kernel", KERNEL]).cfg.ram_size == 14 * GIB
    assert from_stream(description(ram_size=14 * GIB), MachineConfig()).ram_size == 14 * GIB


def test_a_small_host_keeps_half_a_gib_for_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "physical_memory", lambda: 2 * GIB)
    assert config.host_ram_limit() == 1.5 * GIB
    monkeypatch.setattr(config, "physical_memory", lambda: None)  # the system does not say
    assert config.host_ram_limit() == config.MAX_RAM


def test_the_cpu_model_and_devices_travel_and_old_streams_keep_their_machine() -> None:
    devices = ["isa-debug-exit,iobase=0x501,iosize=0x02"]
    cfg = from_stream(description(cpu="max", devices=devices), MachineConfig())
    assert (cfg.cpu, cfg.devices) == ("max", devices)
    # a stream from before -cpu and -device: the CPU of that time (every feature guests
    # used is in "max") and the isa-debug-exit that always sat at F4h
    # (a description of version 0, which compat brings up to this pyemu's)
    old = {k: v for k, v in description().items() if k not in ("cpu", "devices")}
    upgraded = upgrade_description({"config": old})
    assert upgraded["version"] == DESCRIPTION_VERSION
    cfg = from_stream(upgraded["config"], MachineConfig())
    assert (cfg.cpu, cfg.devices) == ("max", ["isa-debug-exit,iobase=0xf4,iosize=0x04"])
    assert refusal(description(cpu="host")) == \
        "description/config/cpu: unknown CPU model 'host' ('-cpu help' lists them)"
    assert refusal(description(devices=["e1000"])).startswith(
        "description/config/devices[0]: unknown device 'e1000'")
    assert refusal(description(devices=["isa-debug-exit"] * 17)) == \
        "description/config/devices: not a list of up to 16 -device specs"
    assert refusal(description(devices="isa-debug-exit")).startswith(
        "description/config/devices: not a list")
