"""qrexec-policy-daemon: socket protocol, bad requests, EvalSimple/EvalGUI, reload,
concurrency."""

import os
import socket

import pytest

from policy_helpers import (TIMEOUT, query, recv_all, request, running_daemon, tree,  # noqa: F401
                            wait_for, SYSTEM)

ALLOW_PERSONAL = (b"user=DEFAULT\nresult=allow\ntarget=personal\n"
                  b"target_uuid=uuid:11111111-0000-0000-0000-000000000002\n"
                  b"autostart=True\nrequested_target=personal")


def test_answers_like_exec(tree):
    with running_daemon(tree) as d:
        assert query(d.sock, request("work", "personal", "qubes.Filecopy")) == ALLOW_PERSONAL
        assert query(d.sock, request("untrusted", "work", "qubes.Filecopy")) == b"result=deny"
        assert query(d.sock, request("work", "personal", "qubes.Filecopy",
                                     just_evaluate="yes")) == b"result=allow"
        assert query(d.sock, request("personal", "vault", "qubes.Filecopy",
                                     assume_yes_for_ask="yes")).startswith(b"user=DEFAULT\n")
        # The daemon's own request shape (DAEMON.md §5.2) with an empty requested_source.
        data = (b"source=work\nrequested_source=\nintended_target=@dispvm\n"
                b"service_and_arg=demo.Echo+hello\n\n")
        assert b"target=@dispvm:dvm-tpl\n" in query(d.sock, data)


@pytest.mark.parametrize("data", [
    b"source=work\nintended_target=personal\n\n",
    b"source=work\nintended_target=personal\nservice_and_arg=a.B\nbogus=1\n\n",
    b"source=work\nsource=work\nintended_target=personal\nservice_and_arg=a.B\n\n",
    b"source=work\nintended_target=personal\nservice_and_arg=a.B\njust_evaluate=true\n\n",
    b"source=work\nintended_target\nservice_and_arg=a.B\n\n",
    b"source=w\xc3\xb6rk\nintended_target=personal\nservice_and_arg=a.B\n\n",
    b"domain_id=1\nsource=work\nintended_target=personal\nservice_and_arg=a.B\n\n",
    b"x" * 70000,
])
def test_bad_requests_closed_without_reply(tree, data):
    with running_daemon(tree) as d:
        try:
            assert query(d.sock, data) == b""
        except (BrokenPipeError, ConnectionResetError):
            pass
        # ...and the daemon is still fine.
        assert query(d.sock, request("work", "personal", "qubes.Filecopy")) == ALLOW_PERSONAL


def test_eof_ends_request(tree):
    with running_daemon(tree) as d:
        data = b"source=work\nintended_target=personal\nservice_and_arg=qubes.Filecopy"
        out = query(d.sock, data, shutdown=True)
        assert out == ALLOW_PERSONAL


def eval_query(path, header, body):
    return query(path, header + b"\0" + body, shutdown=True)


def test_eval_simple(tree):
    with running_daemon(tree) as d:
        h = b"policy.EvalSimple+qubes.Filecopy dom0 keyword adminvm"
        assert eval_query(d.eval_sock, h, b"work\0personal") == b"result=allow\n"
        assert eval_query(d.eval_sock, h, b"untrusted\0personal") == b"result=deny\n"
        # ask + assume yes
        assert eval_query(d.eval_sock, h, b"personal\0vault") == b"result=allow\n"
        # invalid input: closed without reply
        assert eval_query(d.eval_sock, h, b"work") == b""
        assert eval_query(d.eval_sock, h, b"work\0bad:target") == b""
        assert eval_query(d.eval_sock, b"policy.EvalSimple++x dom0", b"a\0b") == b""
        assert eval_query(d.eval_sock, b"policy.EvalSimple+ dom0", b"a\0b") == b""


def test_eval_gui_requires_guivm_tags(tree):
    system = {"domains": dict(SYSTEM["domains"])}
    for name in ("work", "personal"):
        system["domains"][name] = dict(system["domains"][name], tags=["guivm-sys-gui"])
    tree.set_system(system)
    with running_daemon(tree) as d:
        ok = b"policy.EvalGUI+qubes.Filecopy sys-gui keyword adminvm"
        other = b"policy.EvalGUI+qubes.Filecopy other-gui keyword adminvm"
        assert eval_query(d.gui_sock, other, b"work\0personal") == b"result=deny\n"
        # work lost its "trusted" tag above, so line 3 no longer allows it.
        assert eval_query(d.gui_sock, ok, b"work\0personal") == b"result=deny\n"
        tree.write("05-gui.policy", "qubes.Filecopy * work personal allow\n")
        wait_for(lambda: eval_query(d.gui_sock, ok, b"work\0personal") == b"result=allow\n",
                 what="reload")


def test_reload_on_change_and_syntax_error(tree):
    with running_daemon(tree) as d:
        req = request("work", "personal", "qubes.Filecopy")
        assert query(d.sock, req) == ALLOW_PERSONAL
        tree.write("05-first.policy", "qubes.Filecopy * work personal deny\n")
        wait_for(lambda: query(d.sock, req) == b"result=deny", what="reload after create")
        os.unlink(os.path.join(tree.etc_dir, "05-first.policy"))
        wait_for(lambda: query(d.sock, req) == ALLOW_PERSONAL, what="reload after delete")
        tree.write("50-bad.policy", "qubes.Filecopy * work\n")
        wait_for(lambda: query(d.sock, req) == b"result=deny", what="reload with error")
        wait_for(lambda: "50-bad.policy:1: wrong number of fields" in open(d.log_path).read(),
                 what="error logged with file:line")
        tree.write("50-bad.policy", "# fixed\n")
        wait_for(lambda: query(d.sock, req) == ALLOW_PERSONAL, what="reload after fix")


def test_request_in_flight_survives_reload(tree):
    fifo = os.path.join(tree.root, "ask.fifo")
    os.mkfifo(fifo)
    started = os.path.join(tree.root, "ask.started")
    ask = f"cat >/dev/null; touch {started}; read answer < {fifo}; echo \"$answer\""
    with running_daemon(tree, "--ask-command", ask) as d:
        with socket.socket(socket.AF_UNIX) as pending:
            pending.settimeout(TIMEOUT)
            pending.connect(d.sock)
            pending.sendall(request("personal", "vault", "qubes.Filecopy"))
            wait_for(lambda: os.path.exists(started), what="prompt started")
            # While the prompt is open, the policy changes and other clients are served.
            tree.write("05-deny.policy", "qubes.Filecopy * @anyvm @anyvm deny\n")
            req = request("work", "personal", "qubes.Filecopy")
            wait_for(lambda: query(d.sock, req) == b"result=deny", what="reload")
            fd = None

            def open_fifo():
                nonlocal fd
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                    return True
                except OSError:
                    return False
            wait_for(open_fifo, what="prompt reading its answer")
            os.write(fd, b"allow:vault\n")
            os.close(fd)
            out = recv_all(pending)
            assert b"result=allow\ntarget=vault\n" in out


def test_many_concurrent_clients(tree):
    with running_daemon(tree) as d:
        socks = []
        try:
            for _ in range(64):
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(TIMEOUT)
                s.connect(d.sock)
                s.sendall(b"source=work\nintended_target=personal\n")
                socks.append(s)
            # All are half-way; one more client is still answered at once.
            assert query(d.sock, request("work", "personal", "qubes.Filecopy")) == ALLOW_PERSONAL
            for s in reversed(socks):
                s.sendall(b"service_and_arg=qubes.Filecopy\n\n")
            for s in socks:
                out = recv_all(s)
                assert out == ALLOW_PERSONAL
        finally:
            for s in socks:
                s.close()


def test_socket_permissions(tree):
    import stat
    with running_daemon(tree) as d:
        assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660


def test_stale_socket_replaced(tree):
    stale = os.path.join(tree.root, "policy.sock")
    with open(stale, "w") as f:
        f.write("stale")
    with running_daemon(tree) as d:
        assert query(d.sock, request("work", "personal", "qubes.Filecopy")) == ALLOW_PERSONAL


def test_rewrite_in_place_never_answers_from_a_half_written_file(tree):
    """A large policy file is rewritten in place (truncate, then written in chunks)
    over and over while 8 callers hammer the daemon: every answer comes from one of
    the two complete versions, never from a truncated or half-written file (which
    would fall through to the demo policy's deny, or fail to parse and deny)."""
    import threading

    padding = "".join(f"# padding {i:05d} {'x' * 64}\n" for i in range(3000))  # ~250 KB
    versions = [padding + "s.Hammer * @anyvm @anyvm allow target=personal\n",
                padding + "s.Hammer * @anyvm @anyvm allow target=untrusted\n"]
    expected = {
        b"user=DEFAULT\nresult=allow\ntarget=" + name.encode() + b"\ntarget_uuid=uuid:" +
        SYSTEM["domains"][name]["uuid"].encode() + b"\nautostart=True\nrequested_target=work"
        for name in ("personal", "untrusted")}
    path = os.path.join(tree.etc_dir, "05-hammer.policy")
    with open(path, "w") as f:
        f.write(versions[0])
    req = request("work", "work", "s.Hammer")
    rewrites = 41  # odd: the last version differs from the first, so it proves a reload
    with running_daemon(tree) as d:
        wait_for(lambda: query(d.sock, req) in expected, what="first version loaded")
        done = threading.Event()
        answers = [[] for _ in range(8)]
        errors = []

        def caller(out):
            try:
                while not done.is_set():
                    out.append(query(d.sock, req))
            except Exception as e:  # reported below, never swallowed
                errors.append(repr(e))

        threads = [threading.Thread(target=caller, args=(a,)) for a in answers]
        for t in threads:
            t.start()
        try:
            def answered():
                return sum(len(out) for out in answers)

            for i in range(rewrites):
                # Interleave: a couple of answers between any two rewrites, however slow
                # the machine (or a sanitizer build) is.
                before = answered()
                wait_for(lambda: answered() >= before + 2, what="answers between rewrites")
                text = versions[(i + 1) % 2].encode()
                fd = os.open(path, os.O_WRONLY | os.O_TRUNC)  # in place: same inode
                try:
                    for off in range(0, len(text), 16384):
                        os.write(fd, text[off:off + 16384])
                finally:
                    os.close(fd)
            # The last version is answered once the daemon caught up.
            last = b"target=" + (b"personal" if rewrites % 2 == 0 else b"untrusted")
            wait_for(lambda: last in query(d.sock, req), what="last version loaded")
        finally:
            done.set()
            for t in threads:
                t.join(TIMEOUT)
        assert not errors, errors
        flat = [a for out in answers for a in out]
        bad = [a for a in flat if a not in expected]
        assert not bad, (f"{len(bad)} of {len(flat)} answers from a half-written file: {bad[:3]}\n"
                         + open(d.log_path).read()[-3000:])
        assert len(flat) >= 2 * rewrites, len(flat)
        log = open(d.log_path).read()
        # The rewrites were seen: at least one reload after the first load (a loaded
        # machine may fold many rewrites into one reload).
        assert log.count("policy loaded (generation") >= 2, log[-2000:]
        assert "error loading policy" not in log, log[-2000:]
