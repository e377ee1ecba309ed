#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (fuzz/corpus/<target>/).

Each seed is a valid or nearly valid input in the layout the target expects
(see the comment at the top of fuzz/<target>.cpp), so a short CI run starts
from the interesting paths instead of discovering the wire format byte by byte.
Run from the repository root: python3 fuzz/corpus/make_seeds.py
"""
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))

HELLO, STDIN, STDOUT, STDERR, EXIT = 0x300, 0x190, 0x191, 0x192, 0x193
EXEC_CMDLINE, JUST_EXEC, SERVICE_CONNECT, SERVICE_REFUSED = 0x200, 0x201, 0x202, 0x203
TRIGGER2, TERMINATED, TRIGGER3, TRIGGER4 = 0x210, 0x211, 0x212, 0x213


def frame(kind, payload=b""):
    return struct.pack("<II", kind, len(payload)) + payload


def params(domain, port, body=b""):
    return struct.pack("<II", domain, port) + body


def fixed(text, size):
    return text[: size - 1].ljust(size, b"\0")


def trigger(kind, service, target, ident=b"SOCKET7", source=b""):
    if kind == TRIGGER2:
        return fixed(service, 64) + fixed(target, 32) + fixed(ident, 32)
    head = fixed(target, 64) + fixed(ident, 32)
    if kind == TRIGGER4:
        head = fixed(source, 64) + head
    return head + service + b"\0"


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main():
    hello4 = frame(HELLO, struct.pack("<I", 4))
    hello3 = frame(HELLO, struct.pack("<I", 3))

    # frame_fuzz: seed byte, then a stream of frames.
    write("frame_fuzz", "hello_then_data", b"\x04" + hello4 + frame(STDOUT, b"abc") + frame(EXIT, b"\0\0\0\0"))
    write("frame_fuzz", "partial", b"\x13" + hello3 + frame(STDIN, b"x" * 70)[:40])
    write("frame_fuzz", "too_long", b"\x01" + frame(STDOUT, b"y" * 10))
    write("frame_fuzz", "old_hello", b"\x02" + frame(HELLO, struct.pack("<I", 1)) + frame(HELLO, b"12345"))

    # daemon_client_fuzz: seed byte, then what qrexec-client sends.
    write("daemon_client_fuzz", "exec", b"\x05" + hello3 + frame(EXEC_CMDLINE, params(0, 0, b"DEFAULT:QUBESRPC qubes.Svc dom0\0")))
    write("daemon_client_fuzz", "just_exec", b"\x09" + hello3 + frame(JUST_EXEC, params(0, 0, b"user:true\0")))
    write("daemon_client_fuzz", "connect", b"\x11" + hello3 + frame(SERVICE_CONNECT, params(3, 514, b"SOCKET7\0")))
    write("daemon_client_fuzz", "unterminated", b"\x21" + hello3 + frame(EXEC_CMDLINE, params(0, 0, b"cmd")))
    write("daemon_client_fuzz", "old_hello", b"\x03" + frame(HELLO, struct.pack("<I", 2)))

    # agent_control_fuzz: selector (even: dom0 control stream; odd: a
    # qrexec-client-vm request, fd = selector >> 1), then the bytes.
    write("agent_control_fuzz", "exec", b"\x00" + frame(EXEC_CMDLINE, params(0, 513, b"user:QUBESRPC qubes.Svc+a dom0\0")))
    write("agent_control_fuzz", "mixed", b"\x00" + frame(JUST_EXEC, params(0, 514, b"root:true\0"))
          + frame(SERVICE_CONNECT, params(2, 515, b"SOCKET12\0")) + frame(SERVICE_REFUSED, fixed(b"SOCKET9", 32)))
    write("agent_control_fuzz", "unterminated", b"\x00" + frame(EXEC_CMDLINE, params(0, 513, b"user:cmd")))
    write("agent_control_fuzz", "local_trigger", b"\x0b" + frame(TRIGGER4, trigger(TRIGGER4, b"qubes.Filecopy+a", b"@default", b"")))
    write("agent_control_fuzz", "local_trigger_junk_ident", b"\x07" + frame(TRIGGER4, trigger(TRIGGER4, b"svc", b"vault", b"x\xff")))

    # trigger_fuzz: version selector, then an agent message.
    write("trigger_fuzz", "v2", b"\x00" + frame(TRIGGER2, trigger(TRIGGER2, b"qubes.Svc+a", b"vault")))
    write("trigger_fuzz", "v3", b"\x01" + frame(TRIGGER3, trigger(TRIGGER3, b"qubes.Svc+a", b"@dispvm:dvm")))
    write("trigger_fuzz", "v4", b"\x02" + frame(TRIGGER4, trigger(TRIGGER4, b"qubes.Svc+a", b"vault", source=b"relay")))
    write("trigger_fuzz", "v4_bad_ident", b"\x02" + frame(TRIGGER4, trigger(TRIGGER4, b"svc", b"t", b"bad ident!")))
    write("trigger_fuzz", "terminated", b"\x02" + frame(TERMINATED, params(0, 513)))

    # data_stream_fuzz: bit 0 = service side, bit 1 = protocol v2; then the peer's frames.
    write("data_stream_fuzz", "client", b"\x00" + frame(STDOUT, b"out") + frame(STDERR, b"err") + frame(STDOUT) + frame(EXIT, struct.pack("<i", 3)))
    write("data_stream_fuzz", "service", b"\x01" + frame(STDIN, b"in") + frame(STDIN))
    write("data_stream_fuzz", "v2_too_big", b"\x02" + frame(STDOUT, b"z" * 5000))
    write("data_stream_fuzz", "unknown", b"\x00" + frame(0x999, b"?"))

    # policy_parser_fuzz: a policy file.
    write("policy_parser_fuzz", "rules", b"""# comment
qubes.Filecopy * @anyvm @anyvm ask default_target=vault
qubes.Svc +arg work @default allow target=dom0 user=root
* * @tag:t @dispvm:dvm allow autostart=no notify=yes
qubes.Gpg * work @adminvm deny notify=no
!include-service qubes.Svc * include/file
""")
    write("policy_parser_fuzz", "legacy", b"$anyvm $dispvm:dvm allow,target=$dispvm:dvm\nwork dom0 ask,default_target=dom0\n")

    # policy_request_fuzz: a policy-daemon socket request / policy.Eval* input.
    write("policy_request_fuzz", "socket", b"source=work\nrequested_source=\nintended_target=vault\nservice_and_arg=qubes.Svc+a\nassert_call_originates_from_dom0=no\n\n")
    write("policy_request_fuzz", "eval", b"work\0vault\0qubes.Svc+a\0")

    # qubesd_reply_fuzz: 1 byte (bit 0: uuid form asked), then qubesd's reply.
    write("qubesd_reply_fuzz", "name", b"\x00" + b"0\0disp42")
    write("qubesd_reply_fuzz", "uuid", b"\x01" + b"0\0uuid:0123abcd-4567-89ef-0123-456789abcdef")
    write("qubesd_reply_fuzz", "exception", b"\x00" + b"2\0QubesVMNotHaltedError\0details\0")
    write("qubesd_reply_fuzz", "trailing", b"\x00" + b"0\0disp-dm\0junk")


if __name__ == "__main__":
    main()
