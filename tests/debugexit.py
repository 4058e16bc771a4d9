"""QEMU's isa-debug-exit as the test guests use it (tests/guests/README.md): a guest's
write of V to port F4h ends the emulator with status (V << 1) | 1, so 1 is PASS and 3
is FAIL. pyemu, like QEMU, has the device only when the command line adds it."""

DEBUG_EXIT = "isa-debug-exit,iobase=0xf4,iosize=0x04"  # a -device value
DEBUG_EXIT_ARGS = ("-device", DEBUG_EXIT)
PASS_STATUS = 1
