# pyemu: `make run` sets everything up and boots the bundled demo guest from its disk
# image through pyemu's own BIOS;
# `make test` does the same set-up, builds the test guests and runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENGINE := $(VENV)/.unicorn-pyemu
ENGINE_PATCHES := $(wildcard emu/cpu/unicorn-patches/*.patch)
HELPER := emu/cpu/_cpuhelper.so
DEMO := emu/guests/demo.elf
DEMO_IMG := emu/guests/demo.img

.PHONY: all build run test lint guests firmware qemu bios bench clean linux-guest syslinux-guest \
        grub-guest debian-guests debian-disk

all: build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# pyemu's CPU engine: unicorn 2.1.4 built from its PyPI source with the patches in
# emu/cpu/unicorn-patches/ (x86 only, about a minute on 2 cores), installed over PyPI's
# wheel; built again only when the patches change (notes/speed.md says why).
$(ENGINE): $(STAMP) $(ENGINE_PATCHES) emu/cpu/unicorn-patches/build.sh
	emu/cpu/unicorn-patches/build.sh $(CURDIR)/$(BIN)/python
	touch $@

$(HELPER): emu/cpu/cpuhelper.c
	gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -lpthread

emu/guests/%.o: emu/guests/%.S emu/guests/multiboot32.inc
	as --32 -I emu/guests -o $@ $<

# The demo guest as a Multiboot kernel (-kernel emu/guests/demo.elf) ...
$(DEMO): emu/guests/demo.o emu/guests/demo.ld
	ld -m elf_i386 --no-warn-rwx-segments -T emu/guests/demo.ld -o $@ emu/guests/demo.o

# ... and, the same object linked again behind our MBR, the disk image pyemu boots
# through the BIOS when given no guest options.
$(DEMO_IMG): emu/guests/demoboot.o emu/guests/demo.o emu/guests/demoimg.ld
	ld -m elf_i386 -T emu/guests/demoimg.ld -o $@ emu/guests/demoboot.o emu/guests/demo.o

build: $(STAMP) $(ENGINE) $(HELPER) $(DEMO) $(DEMO_IMG) bios
	@# bytecode for every module, written even where PYTHONDONTWRITEBYTECODE is set: without
	@# it each pyemu process compiles all of emu/ at start, and a migration's destination
	@# compiles what it imports late while the source waits (stale files are recompiled)
	$(BIN)/python -m compileall -q emu

# pyemu's own BIOS (firmware/, built with the system toolchain).
bios:
	$(MAKE) -C firmware

run: build
	$(BIN)/pyemu -nographic

guests:
	$(MAKE) -C tests/guests

# Third-party firmware the tests boot (Debian's seabios, and iPXE's ipxe.lkrn, which
# boots as a -kernel), installed when missing.
firmware:
	tests/guests/firmware/fetch-deb.sh seabios /usr/share/seabios/bios.bin
	tests/guests/firmware/fetch-deb.sh ipxe /boot/ipxe.lkrn

# QEMU itself, which the tests run beside pyemu on the same guests where they compare;
# qemu-img (qemu-utils), which makes, checks and compares the qcow2 images pyemu reads and
# writes; Debian's gdb, which drives pyemu's gdb stub (tests/integration/test_gdb.py); and
# ACPICA's iasl, which disassembles pyemu's ACPI tables (tests/machine/test_acpi.py).
qemu:
	tests/guests/firmware/fetch-deb.sh qemu-system-x86 /usr/bin/qemu-system-x86_64
	tests/guests/firmware/fetch-deb.sh qemu-utils /usr/bin/qemu-img
	tests/guests/firmware/fetch-deb.sh gdb /usr/bin/gdb
	tests/guests/firmware/fetch-deb.sh acpica-tools /usr/bin/iasl

# Debian's Linux kernel and a busybox initramfs (tests/guests/build/linux), fetched with
# apt-get and built when missing.
linux-guest:
	PYTHON=$(CURDIR)/$(BIN)/python tests/guests/linux/fetch.sh

# Debian's SYSLINUX on an IDE disk (MBR + FAT16) booting the Linux guest (or, without
# it, a Multiboot test guest): tests/guests/build/syslinux, built when missing.
syslinux-guest: guests linux-guest
	PYTHON=$(CURDIR)/$(BIN)/python tests/guests/syslinux/fetch.sh

# Debian's GRUB 2 (grub-mkrescue) and ISOLINUX on hybrid ISOs (CD and disk) booting the
# Linux guest: tests/guests/build/grub and build/isolinux, built when missing.
grub-guest: linux-guest
	PYTHON=$(CURDIR)/$(BIN)/python tests/guests/grub/fetch.sh

# Debian's public guests (memtest86+, the generic and 686 kernels, the netboot installer)
# that tests boot beside QEMU: tests/guests/build/debian, fetched when missing.
debian-guests: linux-guest
	PYTHON=$(CURDIR)/$(BIN)/python tests/guests/debian/fetch.sh

# A minimal Debian 12 system (mmdebstrap: GRUB, the cloud kernel, sysvinit) on a raw IDE
# disk image, booted to a root login: tests/guests/build/debdisk, built when missing or
# older than its scripts (packages cached in build/debdisk/cache). Needs root.
debian-disk:
	PYTHON=$(CURDIR)/$(BIN)/python tests/guests/debdisk/build.sh

lint: $(STAMP)
	$(BIN)/ruff check emu tests bench

# pytest exits 5 when it collected nothing; make fails on any non-zero status.
# TEST_JOBS pytest workers (pytest-xdist), each given whole modules: a module's guests,
# booted once by a module fixture, stay in one worker.
TEST_JOBS ?= 2
test: build guests firmware qemu linux-guest debian-guests syslinux-guest grub-guest debian-disk lint
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_JOBS) --dist loadfile --durations=25

BENCH_GUEST := bench/guests/build/compute.elf

$(BENCH_GUEST): bench/guests/compute.S emu/guests/multiboot32.inc emu/guests/demo.ld
	mkdir -p bench/guests/build
	as --32 -I emu/guests -o bench/guests/build/compute.o bench/guests/compute.S
	ld -m elf_i386 --no-warn-rwx-segments -T emu/guests/demo.ld -o $@ bench/guests/build/compute.o

bench: build guests linux-guest $(BENCH_GUEST)
	$(BIN)/python bench/cpu.py
	$(BIN)/python bench/boot.py
	$(BIN)/python bench/snapshot.py
	$(BIN)/python bench/migrate.py

clean:
	rm -rf $(HELPER) $(DEMO) $(DEMO_IMG) emu/guests/*.o bench/guests/build
	$(MAKE) -C firmware clean
	$(MAKE) -C tests/guests clean
