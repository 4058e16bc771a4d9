"""Crash consistency of pyemu's qcow2 writes with a real writer: Debian's Linux guest
(see test_linux.py) rewrites random 256 KiB runs of its qcow2 disk, and pyemu is killed
with SIGKILL at a random instant; the same image goes on to the next round. After
every kill the real ``qemu-img check`` must find no corruption (exit 0, or 3: leaked
clusters only, which qcow2's metadata order allows)."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time

import pytest
from test_linux import APPEND, BUILD, MARKER
from test_linux_migration import boot  # noqa: F401  (fixture)

pytestmark = pytest.mark.linux
KILLS = 4  # tests/host/test_qcow2.py stops a writer between every two of its writes
DISK_MIB = 64
WRITER = ("while true; do dd if=/dev/urandom of=/dev/sda bs=64k count=4 "
          f"seek=$((RANDOM % {DISK_MIB * 16 - 4})) conv=fsync 2>/dev/null; "
          "echo -n w; done &")


def check(image) -> tuple[int, str]:
    r = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.timeout(KILLS * 40 + 60)
def test_kill_9_during_guest_writes_never_corrupts_the_image(boot, tmp_path):  # noqa: F811
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), f"{DISK_MIB}M"],
                   check=True, capture_output=True, timeout=60)
    rng = random.Random(19)
    verdicts = []
    for _ in range(KILLS):
        p = boot.process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                         str(BUILD / "rootfs.gz"), "-append", APPEND,
                         "-drive", f"file={disk},format=qcow2,if=ide,index=0")
        p.console.wait_for(re.escape(MARKER), timeout=90)
        p.console.wait_for(rb"# ", timeout=30)
        p.console.type(
            "for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done; " + WRITER)
        p.console.wait_for(rb"ww", timeout=30)  # the writer runs
        time.sleep(rng.uniform(0.0, 1.5))
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(15)
        code, report = check(disk)
        assert code in (0, 3), report  # 2 would be corruption
        verdicts.append(code)
    print(f"\n{KILLS} kills during guest writes: qemu-img check exit codes {verdicts}")
