#!/usr/bin/env python3
"""DMUC (issue 7): delivery latency over a slow s2s link, with and without a mirror.

    .venv/bin/python tests/dmuc/latency.py --local 5 --remote 20 --rate 5 --seconds 20 \\
        --kbit 256 --delay-ms 100 [--dmuc]

Two federating Prosody servers (scripts/prosody-pair-env.sh) reach each other only through
relays in this process (the pair's A_REACH/B_REACH), which shape each direction of the link:
`--kbit` per direction (a token bucket) and `--delay-ms` one way (this kernel has no netem, so
the relay adds both). K occupants on A and R on B share room@conference.alpha.test on mixd@A; with
`--dmuc` the occupants of B enter through the mirror mixd on B. An occupant of A sends `--rate`
messages per second for `--seconds`; each message carries its send time, and every occupant of
B notes when it arrives (one clock: one machine). Prints p50 / p99 / max delivery latency to B
and how many arrived.
"""
import argparse
import asyncio
import collections
import gc
import pathlib
import socket
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "interop"))

from federation import (PORTS, MixdOn, Pair, login, logout, pick_addresses,  # noqa: E402
                        run_in_new_loop)
from slixmpp import JID  # noqa: E402
from slixmpp.plugins.xep_0004 import Form  # noqa: E402

MIRROR = "mirror.beta.test"
WAIT = 120.0


class ShapedRelay:
    """A TCP relay in front of one server's s2s port that shapes what flows towards it (the
    other server's stanzas): `bps` bytes per second shared by all its connections, and `delay`
    seconds one way. The answers on the same connections (stream features, dialback results)
    pass at once."""

    def __init__(self, listen: str, target: str, port: int, bps: float, delay: float):
        self.target, self.port, self.bps, self.delay = target, port, bps, delay
        self.lock = threading.Lock()
        self.free_at = 0.0  # when the shaped link is free again
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((listen, port))
        srv.listen(16)
        self.server = srv
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            try:
                u = socket.create_connection((self.target, self.port), timeout=5)
                # The timeout is for connecting only: a link that is quiet for a while is not a
                # dead one (with it, every connection broke after 5 s without traffic one way).
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            # A relay forwards at once: no Nagle on its writes (the servers' own sockets decide
            # for the servers).
            for sock in (c, u):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._shaped, args=(c, u), daemon=True).start()
            threading.Thread(target=self._plain, args=(u, c), daemon=True).start()

    def _shaped(self, src, dst):
        queue = collections.deque()
        cond = threading.Condition()
        done = []

        def writer():
            while True:
                with cond:
                    while not queue and not done:
                        cond.wait()
                    if not queue:
                        break
                    due, data = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=writer, daemon=True).start()
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                now = time.monotonic()
                with self.lock:
                    # Serialisation on the slow link, then the propagation delay.
                    start = max(now, self.free_at)
                    self.free_at = start + len(data) / self.bps
                    due = self.free_at + self.delay
                with cond:
                    queue.append((due, data))
                    cond.notify()
        except OSError:
            pass
        with cond:
            done.append(True)
            cond.notify()

    @staticmethod
    def _plain(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()


async def scene(pair, k, r, rate, seconds, dmuc):
    room = JID(f"room@{pair.a.muc}")
    remote_room = JID(f"room\\40{pair.a.muc}@{MIRROR}") if dmuc else room
    clients = []
    try:
        local = [await login(pair.a, f"local{i}", "lat") for i in range(1, k + 1)]
        remote = [await login(pair.b, f"remote{i}", "lat") for i in range(1, r + 1)]
        clients += local + remote
        owner = local[0]
        await owner.muc.join_muc_wait(room, "l1", timeout=WAIT)
        await owner.muc.set_room_config(room, Form(), timeout=WAIT)
        for i, c in enumerate(local[1:], 2):
            await c.muc.join_muc_wait(room, f"l{i}", timeout=WAIT)
        for i, c in enumerate(remote, 1):
            await c.muc.join_muc_wait(remote_room, f"r{i}", timeout=WAIT)
        arrivals = collections.defaultdict(dict)  # body -> {client index: time}
        # The other occupants of A, for comparison (the same room, no s2s on the way).
        at_a = collections.defaultdict(dict)

        def note(into, idx):
            def handler(msg):
                body = msg["body"] or ""
                if body.startswith("lat-") and msg.xml.find("{urn:xmpp:delay}delay") is None:
                    into[body].setdefault(idx, time.time())
            return handler

        for idx, c in enumerate(remote):
            c.add_event_handler("groupchat_message", note(arrivals, idx))
        for idx, c in enumerate(local[1:]):
            c.add_event_handler("groupchat_message", note(at_a, idx))
        sent = {}
        n = int(rate * seconds)
        # The relays and the clients live in this process: a pause of Python's cyclic garbage
        # collector (~100 ms with 25 clients' objects, every ~26 messages) would hold every
        # copy in flight and show up as link latency. Collected now, then not during the run.
        gc.collect()
        gc.freeze()
        gc.disable()
        t0 = time.time()
        for i in range(n):
            body = f"lat-{i:05d}"
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.time()))
            sent[body] = time.time()
            owner.send_message(mto=room, mbody=body, mtype="groupchat")
        end = time.time() + WAIT
        while time.time() < end and sum(len(v) for v in arrivals.values()) < n * r:
            await asyncio.sleep(0.2)
        gc.enable()
        lat = sorted(t - sent[b] for b, per in arrivals.items() for t in per.values())
        first = max((t - sent[b] for b, per in arrivals.items() if b == "lat-00000"
                     for t in per.values()), default=float("nan"))
        # Per message: the first and the last of its copies at B (is a slow delivery one
        # message late for everyone, or one occupant late?).
        spans = sorted(((min(per.values()) - sent[b], max(per.values()) - sent[b], b)
                        for b, per in arrivals.items()), key=lambda x: -x[1])
        lat_a = sorted(t - sent[b] for b, per in at_a.items() for t in per.values())
        slow_a = sorted(((max(per.values()) - sent[b], b) for b, per in at_a.items()),
                        key=lambda x: -x[0])[:3]
        return n, lat, sum(len(v) for v in arrivals.values()), first, spans[:3], (lat_a, slow_a)
    finally:
        await logout(clients)


def pct(xs, p):
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--local", "-k", type=int, default=5)
    ap.add_argument("--remote", "-r", type=int, default=20)
    ap.add_argument("--rate", type=float, default=5.0, help="messages per second from A")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--kbit", type=float, default=256.0, help="link rate per direction")
    ap.add_argument("--delay-ms", type=float, default=100.0, help="one-way delay")
    ap.add_argument("--dmuc", action="store_true")
    ap.add_argument("--direct", action="store_true",
                    help="no relays: the servers reach each other directly (no shaping)")
    args = ap.parse_args()
    a_addr, b_addr = pick_addresses()
    prefix = a_addr.rsplit(".", 1)[0]
    a_reach, b_reach = f"{prefix}.4", f"{prefix}.5"
    pair = Pair(users=(), a_users=[f"local{i}" for i in range(1, args.local + 1)],
                b_users=[f"remote{i}" for i in range(1, args.remote + 1)], addrs=(a_addr, b_addr))
    if not args.direct:
        pair.env.update(A_REACH=a_reach, B_REACH=b_reach)
    if args.dmuc:
        pair.env["B_EXTRA"] = "conference.beta.test"
    bps = args.kbit * 1000 / 8
    relays = [] if args.direct else [
        ShapedRelay(a_reach, a_addr, PORTS[1], bps, args.delay_ms / 1000),
        ShapedRelay(b_reach, b_addr, PORTS[1], bps, args.delay_ms / 1000)]
    mixds = []
    pair.start()
    try:
        if args.dmuc:
            mixds.append(MixdOn(pair.a, extra_env={"MIXD_DMUC_MIRRORS": MIRROR}))
            mixds.append(MixdOn(pair.b, muc="conference.beta.test",
                                extra_env={"MIXD_DMUC_MIRROR_DOMAIN": MIRROR}))
        else:
            mixds.append(MixdOn(pair.a))
        for m in mixds:
            m.wait_healthy()
        n, lat, got, first, slowest, (lat_a, slow_a) = run_in_new_loop(
            scene(pair, args.local, args.remote, args.rate, args.seconds, args.dmuc))
    finally:
        for m in mixds:
            m.stop()
        pair.stop()
        for rl in relays:
            rl.close()
    what = "DMUC (through the mirror)" if args.dmuc else "plain MUC"
    print(f"{what}: K={args.local}, R={args.remote}, {args.rate:g} msg/s for {args.seconds:g} s, "
          f"link {args.kbit:g} kbit/s each way + {args.delay_ms:g} ms one way")
    print(f"delivered to B: {got} of {n * args.remote}; latency p50 {pct(lat, 0.5) * 1000:.0f} ms, "
          f"p99 {pct(lat, 0.99) * 1000:.0f} ms, max {(lat[-1] if lat else float('nan')) * 1000:.0f} ms; "
          f"the first message's last copy {first * 1000:.0f} ms")
    if lat_a:
        print(f"to the other {args.local - 1} occupants of A: p50 {pct(lat_a, 0.5) * 1000:.0f} ms, "
              f"p99 {pct(lat_a, 0.99) * 1000:.0f} ms, max {lat_a[-1] * 1000:.0f} ms; slowest: "
              + ", ".join(f"{b} {t * 1000:.0f} ms" for t, b in slow_a))
    for lo, hi, body in slowest:
        print(f"  slow: {body} (sent at +{int(body[4:]) / args.rate:.1f} s): first copy {lo * 1000:.0f} ms, "
              f"last {hi * 1000:.0f} ms")


if __name__ == "__main__":
    main()
