"""Every test guest boots under pyemu and prints its own PASS verdict on COM1."""

from __future__ import annotations

import pytest
from debugexit import DEBUG_EXIT_ARGS

GUESTS = ["hello", "exceptions32", "exceptions64", "pit", "uart", "longmode", "stringio",
          "hlt", "reset", "tsc", "cpuid"]


# In realtime mode virtual time is the host's, and a host that deschedules pyemu makes it
# jump: PIT edges of that time collapse in the PIC, as on a PC whose CPU stalls. The
# guests that measure one timer against another see each jump in the TSC, excuse only
# what it explains and say so ("stalled ..."), so their verdict holds however busy the
# host is. In icount mode virtual time comes from instructions: no stall, exact counts.
@pytest.mark.parametrize("name", GUESTS)
@pytest.mark.parametrize("mode", [[], ["-icount", "shift=3"]], ids=["realtime", "icount"])
def test_guest_passes(name, mode, guest, pyemu):
    r = pyemu("-kernel", guest(name), "-serial", "stdio", "-display", "none", *mode,
              *DEBUG_EXIT_ARGS)
    out = r.stdout.decode(errors="replace")
    assert f"PASS {name}" in out, out + r.stderr.decode(errors="replace")
    assert "FAIL" not in out and "BAD " not in out, out
    if mode:
        assert "stalled" not in out, out
    assert r.returncode == 1, f"isa-debug-exit status (0 << 1) | 1 expected, got {r.returncode}"


@pytest.mark.parametrize("cpu", ["qemu64", "max"])
def test_rdtscp_where_the_cpu_model_has_it(cpu, guest, pyemu):
    r = pyemu("-kernel", guest("tsc"), "-serial", "stdio", "-display", "none", "-cpu", cpu,
              "-icount", "shift=3", *DEBUG_EXIT_ARGS)
    out = r.stdout.decode(errors="replace")
    assert "PASS tsc" in out, out
    assert ("RDTSCP returns IA32_TSC_AUX" in out) == (cpu == "max"), out


def test_hello_prints_like_a_new_user_expects(guest, pyemu):
    r = pyemu("-kernel", guest("hello"), "-append", "console=ttyS0 verbose", "-nographic",
              *DEBUG_EXIT_ARGS)
    out = r.stdout.decode()
    assert "Hello from pyemu guest" in out
    assert "console=ttyS0 verbose" in out  # the multiboot command line reached the guest
    assert r.stderr == b""


def test_triple_fault_is_logged_and_resets(guest, pyemu):
    r = pyemu("-kernel", guest("reset"), "-serial", "stdio", "-display", "none",
              *DEBUG_EXIT_ARGS)
    assert "triple fault" in r.stderr.decode()
    assert "PASS reset" in r.stdout.decode()


def test_no_reboot_exits_on_triple_fault(guest, pyemu):
    r = pyemu("-kernel", guest("reset"), "-serial", "stdio", "-display", "none", "-no-reboot")
    assert "triple fault" in r.stderr.decode()
    assert "PASS reset" not in r.stdout.decode()
    assert r.returncode == 0


@pytest.mark.parametrize("name", ["pit", "hlt", "tsc"])
def test_icount_runs_are_reproducible(name, guest, pyemu):
    """In -icount mode time is instructions: two runs print exactly the same bytes."""
    runs = [pyemu("-kernel", guest(name), "-serial", "stdio", "-icount", "shift=2",
                  *DEBUG_EXIT_ARGS).stdout
            for _ in range(2)]
    assert f"PASS {name}".encode() in runs[0]
    assert runs[0] == runs[1]
