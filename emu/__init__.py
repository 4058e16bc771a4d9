"""pyemu: a full-system x86 PC emulator in Python."""

__version__ = "0.1.0"
