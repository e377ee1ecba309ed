"""qrexec's wire format for the test emulators (PROTOCOL.md §2-§3):
little-endian `struct {u32 type; u32 len}` followed by `len` payload bytes."""
import struct

MSG_DATA_STDIN = 0x190
MSG_DATA_STDOUT = 0x191
MSG_DATA_STDERR = 0x192
MSG_DATA_EXIT_CODE = 0x193
MSG_EXEC_CMDLINE = 0x200
MSG_JUST_EXEC = 0x201
MSG_SERVICE_CONNECT = 0x202
MSG_SERVICE_REFUSED = 0x203
MSG_TRIGGER_SERVICE = 0x210
MSG_CONNECTION_TERMINATED = 0x211
MSG_TRIGGER_SERVICE3 = 0x212
MSG_TRIGGER_SERVICE4 = 0x213
MSG_HELLO = 0x300


def frame(msg_type, payload=b""):
    return struct.pack("<II", msg_type, len(payload)) + payload


__all__ = [name for name in dir() if name.startswith("MSG_")] + ["frame"]
