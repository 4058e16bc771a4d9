"""Compat filters of the IDE drive."""

from emu.migration.compat.filters import Add, Upgrade

UPGRADES = [
    # v2 models the ATAPI tray (opened by the guest's START STOP UNIT or the monitor's
    # eject); before it, the tray was always closed.
    Upgrade("ide-drive", 1,
            layout="feature:u8 nsector:u8 lbal:u8 lbam:u8 lbah:u8 hob_feature:u8 "
                   "hob_nsector:u8 hob_lbal:u8 hob_lbam:u8 hob_lbah:u8 status:u8 error:u8 "
                   "mult_sectors:u8 cur_heads:u8 cur_sectors:u8 xfer_mode:u8 "
                   "write_cache:bool phase:u8 command:u8 dma_write:bool "
                   "io_buffer:bytes[65536] io_pos:u32 io_end:u32 xfer_offset:u64 "
                   "xfer_left:u64 block_bytes:u32 block_left:u32 packet_dma:bool "
                   "medium_changed:bool medium_locked:bool sense_key:u8 asc:u8",
            steps=(Add("tray_open", False),)),
]
