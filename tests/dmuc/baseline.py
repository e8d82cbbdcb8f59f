#!/usr/bin/env python3
"""Baseline for DMUC (issue 7): plain MUC across s2s, no DMUC. What crosses the link between two
federating Prosody servers when K occupants on server A and R occupants on server B share one room
on mixd attached to A (room@conference.alpha.test): bytes and stanzas per join, per message, per
presence change and per leave.

    .venv/bin/python tests/dmuc/baseline.py --local 5 --remote 20 --messages 20

Starts its own pair (scripts/prosody-pair-env.sh, fresh loopback addresses), mixd (target/debug/mixd)
on A and tcpdump on `lo` (filtered to port 5269 and the pair's two addresses; installed with apt-get
if missing; needs root). Every phase runs alone and waits until everyone who should has received
what it caused, then for the link to fall quiet; the phase's window of the capture is what it cost.
Checks on the way that every occupant receives every message exactly once. Prints a table (and
with --markdown, the same as a Markdown table).

Phases:
  setup         first contact: s2s streams and dialback both ways (a disco#info from B to the MUC
                domain and its answer)
  remote join   each of the R occupants of B enters, one after the other (the i-th sees K + i - 1
                occupants); 'per' is the mean, 'last' the R-th alone
  local join    one more occupant of A (a K+1-th) enters while the R remote occupants are in the room
  local leave   and leaves again
  message A     M groupchat messages from an occupant of A
  message B     M groupchat messages from an occupant of B
  presence A    an occupant of A changes its presence (show=away) in the room
  remote leave  the R occupants of B leave, one after the other (the i-th leaves K + R - i behind)
"""
import argparse
import asyncio
import collections
import os
import pathlib
import shutil
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "interop"))
sys.path.insert(0, str(HERE))

from federation import MixdOn, Pair, login, logout, new_body, run_in_new_loop  # noqa: E402
from s2s_capture import Capture  # noqa: E402
from slixmpp import JID  # noqa: E402
from slixmpp.plugins.xep_0004 import Form  # noqa: E402

WAIT = 60.0    # for something that must arrive
SETTLE = 0.5   # the link must stay quiet this long before a phase ends
STANZAS = ("message", "presence", "iq")


class Occupant:
    def __init__(self, client, nick: str, room: JID, side: str):
        self.c, self.nick, self.room, self.side = client, nick, room, side

    def seen(self, pred) -> int:
        return sum(1 for s in self.c.inbox if pred(self, s))


def presence_from(nick: str, available: bool):
    def pred(o, s):
        return (s.name == "presence" and s["from"].bare == o.room.bare and s["from"].resource == nick
                and (s["type"] == "unavailable") != available and s["type"] != "error")
    return pred


def show_from(nick: str, show: str):
    def pred(o, s):
        return (s.name == "presence" and s["from"].bare == o.room.bare and s["from"].resource == nick
                and s["show"] == show)
    return pred


def live_groupchat(body: str):
    def pred(o, s):
        return (s.name == "message" and s["type"] == "groupchat" and s["from"].bare == o.room.bare
                and s["body"] == body and s.xml.find("{urn:xmpp:delay}delay") is None)
    return pred


class Scene:
    def __init__(self, capture: Capture):
        self.capture = capture
        self.phases = []  # (name, count, t0, t1)
        self.problems = []

    async def until(self, cond, what: str):
        end = time.monotonic() + WAIT
        while not cond():
            if time.monotonic() > end:
                raise AssertionError(f"not within {WAIT}s: {what}")
            await asyncio.sleep(0.02)

    async def phase(self, name: str, count: int, action, cond, what: str):
        """Runs action(), waits for cond(), then for SETTLE seconds; records the window."""
        t0 = time.time()
        r = action()
        if asyncio.iscoroutine(r):
            await r
        await self.until(cond, what)
        await asyncio.sleep(SETTLE)
        self.phases.append((name, count, t0, time.time()))


# With --dmuc, B's users reach the room through the mirror on B (issue 7): its address there.
MIRROR = "mirror.beta.test"


async def scene(pair: Pair, capture: Capture, k: int, r: int, m: int, dmuc: bool = False,
                name: str = "room") -> Scene:
    """The phases above in room `name` (new), B's users through the mirror with `dmuc`."""
    sc = Scene(capture)
    room = JID(f"{name}@{pair.a.muc}")
    remote_room = JID(f"{name}\\40{pair.a.muc}@{MIRROR}") if dmuc else room
    clients = []
    try:
        local = []
        for i in range(1, k + 2):  # the K+1-th is the late local join
            c = await login(pair.a, f"local{i}", "bench")
            clients.append(c)
            local.append(Occupant(c, f"l{i}", room, "A"))
        remote = []
        for i in range(1, r + 1):
            c = await login(pair.b, f"remote{i}", "bench")
            clients.append(c)
            remote.append(Occupant(c, f"r{i}", remote_room, "B"))
        inside = []
        everyone = local + remote

        def clear():
            for o in everyone:
                o.c.inbox.clear()

        # setup: first s2s contact both ways, outside the room
        first = remote[0].c
        await sc.phase("setup", 1,
                       lambda: first.plugin["xep_0030"].get_info(jid=pair.a.muc, timeout=WAIT),
                       lambda: True, "disco#info answer")

        # the room, and the K local occupants (no one remote yet)
        late = local.pop()
        owner = local[0]
        created = await owner.c.muc.join_muc_wait(room, owner.nick, timeout=WAIT)
        assert 201 in created[0]["muc"]["status_codes"], "room existed already"
        await owner.c.muc.set_room_config(room, Form(), timeout=WAIT)
        inside.append(owner)
        for o in local[1:]:
            await o.c.muc.join_muc_wait(room, o.nick, timeout=WAIT)
            inside.append(o)
        clear()

        async def enter(o, name):
            others = list(inside)
            await sc.phase(name, 1,
                           lambda: o.c.muc.join_muc_wait(o.room, o.nick, timeout=WAIT),
                           lambda: all(x.seen(presence_from(o.nick, True)) for x in others),
                           f"{o.nick}'s presence at every occupant")
            inside.append(o)
            clear()

        async def leave(o, name):
            inside.remove(o)
            others = list(inside)
            await sc.phase(name, 1, lambda: o.c.muc.leave_muc(o.room, o.nick),
                           lambda: (o.seen(presence_from(o.nick, False))
                                    and all(x.seen(presence_from(o.nick, False)) for x in others)),
                           f"{o.nick}'s departure at every occupant")
            clear()

        for i, o in enumerate(remote):
            await enter(o, f"remote join {i + 1}")
        await enter(late, "local join")
        await leave(late, "local leave")

        async def messages(name, sender):
            bodies = [new_body(sender.nick) for _ in range(m)]

            def send():
                for b in bodies:
                    sender.c.send_message(mto=sender.room, mbody=b, mtype="groupchat")

            def arrived():
                return all(o.seen(live_groupchat(b)) for o in inside for b in bodies)
            await sc.phase(name, m, send, arrived, f"{m} messages from {sender.nick} at every occupant")
            await asyncio.sleep(1.0)  # duplicates would arrive by now
            for o in inside:
                for b in bodies:
                    n = o.seen(live_groupchat(b))
                    if n != 1:
                        sc.problems.append(f"{o.nick} received a message from {sender.nick} {n} times")
            clear()

        await messages("message A", owner)
        await messages("message B", remote[0])

        await sc.phase("presence A", 1,
                       lambda: owner.c.send_presence(pto=f"{room}/{owner.nick}", pshow="away"),
                       lambda: all(o.seen(show_from(owner.nick, "away")) for o in inside),
                       "the new presence at every occupant")
        clear()

        for i, o in enumerate(remote):
            await leave(o, f"remote leave {i + 1}")
        return sc
    finally:
        await logout(clients)


def summarise(report, phases):
    """{phase group: (count, bytes A->B, bytes B->A, stanzas A->B, stanzas B->A, names, last)}"""
    groups = collections.OrderedDict()
    for name, count, t0, t1 in phases:
        group = name.rsplit(" ", 1)[0] if name[-1].isdigit() else name
        w = report.window(t0, t1)
        st = {d: sum(n for (dd, nm), n in w.stanzas.items() if dd == d and nm in STANZAS)
              for d in ("A->B", "B->A")}
        row = (count, w.bytes["A->B"], w.bytes["B->A"], st["A->B"], st["B->A"], w.stanzas)
        if group not in groups:
            groups[group] = [0, 0, 0, 0, 0, collections.Counter(), None]
        g = groups[group]
        for i in range(5):
            g[i] += row[i]
        g[5].update(w.stanzas)
        g[6] = row  # the last one of the group
    return groups


def table(groups, markdown: bool) -> str:
    head = ["phase", "n", "bytes A→B", "bytes B→A", "stanzas A→B", "stanzas B→A", "bytes/each",
            "stanzas/each", "last: bytes", "last: stanzas"]
    rows = []
    for name, (n, ab, ba, sab, sba, _names, last) in groups.items():
        each_b = (ab + ba) / n
        each_s = (sab + sba) / n
        lb = last[1] + last[2]
        ls = last[3] + last[4]
        rows.append([name, str(n), str(ab), str(ba), str(sab), str(sba), f"{each_b:.0f}", f"{each_s:.1f}",
                     str(lb) if n > 1 and last[0] == 1 else "", str(ls) if n > 1 and last[0] == 1 else ""])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--local", "-k", type=int, default=5, help="occupants on server A (K)")
    ap.add_argument("--remote", "-r", type=int, default=5, help="occupants on server B (R)")
    ap.add_argument("--messages", "-m", type=int, default=20, help="messages from each side (M)")
    ap.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    ap.add_argument("--keep", action="store_true", help="keep the capture, logs and data directories")
    ap.add_argument("--dmuc", action="store_true",
                    help="B's users enter through a DMUC mirror on B (a second mixd) instead of directly")
    args = ap.parse_args()
    if args.local < 1 or args.remote < 1 or args.messages < 1:
        ap.error("--local, --remote and --messages must be at least 1")

    work = tempfile.mkdtemp(prefix="dmuc-baseline-")
    pair = Pair(users=(), a_users=[f"local{i}" for i in range(1, args.local + 2)],
                b_users=[f"remote{i}" for i in range(1, args.remote + 1)])
    if args.dmuc:
        pair.env["B_EXTRA"] = "conference.beta.test"
    capture = Capture(pair.a.addr, pair.b.addr, os.path.join(work, "s2s.pcap"))
    mixd = mirror = None
    started = time.monotonic()
    pair.start()
    try:
        capture.start()
        if args.dmuc:
            mixd = MixdOn(pair.a, extra_env={"MIXD_DMUC_MIRRORS": MIRROR})
            mirror = MixdOn(pair.b, muc="conference.beta.test",
                            extra_env={"MIXD_DMUC_MIRROR_DOMAIN": MIRROR})
            mirror.wait_healthy()
        else:
            mixd = MixdOn(pair.a)
        mixd.wait_healthy()
        sc = run_in_new_loop(scene(pair, capture, args.local, args.remote, args.messages, args.dmuc))
    finally:
        tail = capture.stop()
        for m in (mixd, mirror):
            if m is not None:
                m.stop()
        pair.stop()
    report = capture.read()
    groups = summarise(report, sc.phases)

    what = f"DMUC, B's users through {MIRROR}" if args.dmuc else "plain MUC across s2s, no DMUC"
    print(f"{what}: K={args.local} on A ({pair.a.domain}, {pair.a.addr}), "
          f"R={args.remote} on B ({pair.b.domain}, {pair.b.addr}), M={args.messages}; "
          f"room@{pair.a.muc} on mixd@A")
    print("bytes: XML on the s2s TCP connections (payload, no TCP/IP headers); stanzas: "
          "message/presence/iq elements at the top of the s2s streams; /each: per join, message, "
          "change or leave; last: the last one of the group alone")
    print(table(groups, False))
    if args.markdown:
        print()
        print(table(groups, True))
    print()
    for name, g in groups.items():
        names = ", ".join(f"{d} {nm} {n}" for (d, nm), n in sorted(g[5].items()))
        print(f"  {name}: {names or 'nothing'}")
    total = sum(n for _t, _d, n in report.bytes)
    counted = sum(g[1] + g[2] for g in groups.values())
    print(f"s2s connections opened: {report.connections}; all s2s bytes in the capture: {total} "
          f"({total - counted} outside the phases, e.g. stream closes at shutdown)")
    print("tcpdump: " + " ".join(line for line in tail.splitlines() if "packets" in line))
    for e in report.errors:
        print(f"capture problem: {e}")
    if sc.problems:
        print("exactly once: NO")
        for p in sc.problems[:20]:
            print(f"  {p}")
    else:
        print("exactly once: every occupant received every message once")
    print(f"took {time.monotonic() - started:.1f}s")
    if args.keep:
        print(f"kept: {work} (s2s.pcap), {pair.dir} (Prosody), {mixd.dir} (mixd)")
    else:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pair.dir, ignore_errors=True)
        shutil.rmtree(mixd.dir, ignore_errors=True)
    sys.exit(1 if sc.problems or report.errors else 0)


if __name__ == "__main__":
    main()
