"""Distributed MUC (seed 003, issue 7) through two real Prosody 0.12 servers federating over s2s
on loopback (scripts/prosody-pair-env.sh):

- server A (alpha.test) has the master: mixd serving conference.alpha.test, configured to accept
  the mirror `mirror.beta.test` (MIXD_DMUC_MIRRORS);
- server B (beta.test) has the mirror: a second mixd serving mirror.beta.test
  (MIXD_DMUC_MIRROR_DOMAIN), besides its own MIX and MUC domains;
- users of A enter `room@conference.alpha.test` directly; users of B enter the same room through
  the mirror, as `room\\40conference.alpha.test@mirror.beta.test` (the room's JID escaped into a
  node, XEP-0106) with slixmpp's xep_0045, like any room.

What a user would check: every occupant sees every other one and receives every message exactly
once; a user behind the mirror cannot change nick (not-acceptable, seed business rules); the
master never sends a broadcast to the users behind the mirror one by one (its s2s stanzas to the
mirror's users are only theirs: self-presence, history, subject).
"""
import asyncio
import socket
import threading

import pytest
from slixmpp import JID
from slixmpp.exceptions import PresenceError
from slixmpp.plugins.xep_0004 import Form

from federation import (PORTS, MixdOn, Pair, groupchat_bodies, login, logout, new_body,
                        pick_addresses, wait_until)

WAIT = 15.0
QUIET = 1.5
# Keepalive interval + timeout of the mirror, and the shell's 2 s clock, with room to spare.
LOSS = 30.0
MASTER_ROOM = "dmuc@conference.alpha.test"
MIRROR = "mirror.beta.test"
# The master room seen through the mirror (XEP-0106: '@' is \40).
LOCAL_ROOM = "dmuc\\40conference.alpha.test@" + MIRROR

_LOOP = asyncio.new_event_loop()


def run(coro):
    return _LOOP.run_until_complete(coro)


class Relay:
    """A TCP relay in front of one server's s2s port: the other server reaches it here (the
    pair's A_REACH/B_REACH), so the test can cut the s2s link (close every connection, refuse
    new ones) and restore it, on loopback and without any firewall."""

    def __init__(self, listen: str, target: str, port: int):
        self.listen, self.target, self.port = listen, target, port
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server = None
        self.start()

    def start(self):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.listen, self.port))
        srv.listen(16)
        self.server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv):
        while True:
            try:
                c, _ = srv.accept()
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
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """The link is gone: connections reset, new ones refused."""
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.server.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    c.close()
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.start()


@pytest.fixture(scope="module")
def dmuc():
    """Both servers, each reaching the other through a relay, the master mixd on A and the
    mirror mixd on B."""
    a_addr, b_addr = pick_addresses()
    prefix = a_addr.rsplit(".", 1)[0]
    a_reach, b_reach = f"{prefix}.4", f"{prefix}.5"
    s2s = PORTS[1]
    p = Pair(addrs=(a_addr, b_addr))
    p.env.update(B_EXTRA="conference.beta.test", A_REACH=a_reach, B_REACH=b_reach)
    relays = [Relay(a_reach, a_addr, s2s), Relay(b_reach, b_addr, s2s)]
    p.relays = relays
    p.start()
    master = mirror = None
    try:
        master = MixdOn(p.a, extra_env={"MIXD_DMUC_MIRRORS": MIRROR})
        mirror = MixdOn(p.b, muc="conference.beta.test",
                        extra_env={"MIXD_DMUC_MIRROR_DOMAIN": MIRROR})
        master.wait_healthy()
        mirror.wait_healthy()
        yield p, master, mirror
    finally:
        for m in (master, mirror):
            if m is not None:
                m.stop()
        p.stop()
        for r in relays:
            r.cut()
        pending = [t for t in asyncio.all_tasks(_LOOP) if not t.done()]
        for t in pending:
            t.cancel()
        _LOOP.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def scenario(body):
    async def go():
        clients = []
        try:
            return await body(clients)
        finally:
            await logout(clients)
    return run(go())


async def enter(c, room: str, nick: str, **history):
    """(self-presence, occupants' presences, history bodies, subject message) of c entering room
    as nick (history: join_muc_wait's maxstanzas, seconds, ...)."""
    pres, subject, occupants, history = await c.muc.join_muc_wait(JID(room), nick, timeout=WAIT,
                                                                  **history)
    return pres, occupants, [m["body"] for m in history], subject


def test_users_behind_a_mirror_take_part_in_the_master_room(dmuc):
    p, master, mirror = dmuc

    async def body(clients):
        alice = await login(p.a, "alice", "desk")
        bob = await login(p.a, "bob", "desk")
        carol = await login(p.b, "carol", "phone")
        dave = await login(p.b, "dave", "phone")
        clients += [alice, bob, carol, dave]
        # alice creates the room on the master (an instant room, XEP-0045 §10.1.2).
        await enter(alice, MASTER_ROOM, "alice")
        await alice.muc.set_room_config(JID(MASTER_ROOM), Form(), timeout=WAIT)
        await enter(bob, MASTER_ROOM, "bob")
        seen = {}
        # Said before anyone of B comes, and the subject: the mirror asks the master for the
        # history (seed 003) and gives it to carol from its copy.
        first = new_body("first")
        alice.send_message(mto=JID(MASTER_ROOM), mbody=first, mtype="groupchat")
        await wait_until(lambda: first in groupchat_bodies(bob, MASTER_ROOM), WAIT,
                         "the first message at bob", clients)
        alice.plugin["xep_0045"].set_subject(JID(MASTER_ROOM), "plans")
        await wait_until(lambda: any(s.name == "message" and s["subject"] == "plans" for s in bob.inbox),
                         WAIT, "the subject at bob", clients)
        seen["carol"] = await enter(carol, LOCAL_ROOM, "carol")
        seen["first"] = first
        # Said before dave comes: his history, which the mirror gives him from its copy too,
        # as much as he asks for (one stanza).
        earlier = new_body("earlier")
        alice.send_message(mto=JID(MASTER_ROOM), mbody=earlier, mtype="groupchat")
        await wait_until(lambda: earlier in groupchat_bodies(carol, LOCAL_ROOM), WAIT,
                         "the earlier message at carol", clients)
        seen["dave"] = await enter(dave, LOCAL_ROOM, "dave", maxstanzas=1)
        seen["earlier"] = earlier
        # Everyone sees everyone.
        rosters = {"alice": (alice, MASTER_ROOM), "bob": (bob, MASTER_ROOM),
                   "carol": (carol, LOCAL_ROOM), "dave": (dave, LOCAL_ROOM)}

        def sees(c, room, nick):
            return any(s.name == "presence" and s["from"] == JID(f"{room}/{nick}")
                       and s["type"] != "unavailable" for s in c.inbox)

        await wait_until(lambda: all(sees(c, room, other) for (c, room) in rosters.values()
                                     for other in rosters),
                         WAIT, "every occupant's presence at every occupant", clients)
        # Each one speaks once; each hears all four, once.
        bodies = {}
        for nick, (c, room) in rosters.items():
            bodies[nick] = new_body(nick)
            c.send_message(mto=JID(room), mbody=bodies[nick], mtype="groupchat")

        def heard_all():
            return all(set(bodies.values()) <= set(groupchat_bodies(c, room))
                       for (c, room) in rosters.values())

        await wait_until(heard_all, WAIT, "every message at every occupant", clients)
        await asyncio.sleep(QUIET)
        heard = {nick: groupchat_bodies(c, room) for nick, (c, room) in rosters.items()}
        froms = {s["body"]: str(s["from"]) for s in carol.inbox
                 if s.name == "message" and s["type"] == "groupchat" and s["body"]}
        # A nick change behind the mirror is refused (seed 003 business rules).
        try:
            await carol.muc.set_self_nick(JID(LOCAL_ROOM), "caroline", timeout=5)
            nick_change = None
        except PresenceError as e:
            nick_change = (e.presence["error"]["type"], e.presence["error"]["condition"])
        except Exception as e:  # noqa: BLE001  (slixmpp may only time out)
            nick_change = ("exception", type(e).__name__)
        nick_errors = [s for s in carol.inbox if s.name == "presence" and s["type"] == "error"]
        return seen, heard, bodies, froms, nick_change, nick_errors

    seen, heard, bodies, froms, nick_change, nick_errors = scenario(body)
    # carol, through the mirror, entered: her self-presence and the others' came from the
    # room's address on the mirror.
    pres, occupants, carol_history, carol_subject = seen["carol"]
    assert pres["from"] == JID(f"{LOCAL_ROOM}/carol")
    assert carol_history == [seen["first"]], carol_history
    assert (carol_subject["subject"], carol_subject["from"]) == ("plans", JID(f"{LOCAL_ROOM}/alice"))
    _pres, dave_sees, dave_history, dave_subject = seen["dave"]
    assert {o["from"].resource for o in dave_sees} >= {"alice", "bob", "carol"}
    assert dave_history == [seen["earlier"]], dave_history
    assert dave_subject["subject"] == "plans"
    assert 110 in pres["muc"]["status_codes"]
    assert {o["from"].resource for o in occupants} >= {"alice", "bob"}
    for nick, got in heard.items():
        for b in bodies.values():
            assert got.count(b) == 1, f"{nick} received {b} {got.count(b)} times: {got}"
    assert froms[bodies["alice"]] == f"{LOCAL_ROOM}/alice"
    assert froms[bodies["dave"]] == f"{LOCAL_ROOM}/dave"
    assert any(e["error"]["condition"] == "not-acceptable" for e in nick_errors), (
        nick_change, [str(e) for e in nick_errors])


def rooms(name: str) -> tuple[str, str]:
    """A master room's JID, and its address through the mirror."""
    return f"{name}@conference.alpha.test", f"{name}\\40conference.alpha.test@{MIRROR}"


async def alice_opens(p, clients, name: str):
    """alice (on A) creates room `name` on the master and is in it; carol (on B) is logged in.
    Returns alice, carol and the room's two addresses."""
    room_a, room_b = rooms(name)
    alice = await login(p.a, "alice", name)
    carol = await login(p.b, "carol", name)
    clients += [alice, carol]
    await enter(alice, room_a, "alice")
    await alice.muc.set_room_config(JID(room_a), Form(), timeout=WAIT)
    return alice, carol, room_a, room_b


def last_presence(c, room: str, nick: str):
    """The last presence c received from room/nick, if any."""
    ps = [s for s in c.inbox if s.name == "presence" and s["from"] == JID(f"{room}/{nick}")]
    return ps[-1] if ps else None


def available(c, room: str, nick: str) -> bool:
    pr = last_presence(c, room, nick)
    return pr is not None and pr["type"] != "unavailable"


def gone_333(c, room: str, nick: str) -> bool:
    """room/nick left, for c, because of a technical problem (XEP-0045 status 333)."""
    pr = last_presence(c, room, nick)
    return pr is not None and pr["type"] == "unavailable" and 333 in pr["muc"]["status_codes"]


def all_bodies(c, room: str) -> list[str]:
    """Bodies of the groupchat messages c received from room, live or delayed."""
    return [s["body"] for s in c.inbox if s.name == "message" and s["type"] == "groupchat"
            and s["from"].bare == room and s["body"]]


def test_a_lost_link_leaves_each_side_talking_and_nothing_is_lost_or_doubled(dmuc):
    """Seed 003 §"Connection to master is lost": when the s2s link goes, each side sees the
    other side's occupants leave (333) and its own keep talking; when it comes back, presence
    is resynchronised both ways and what the mirror's users said meanwhile reaches the master,
    once, in order."""
    p, master, mirror = dmuc
    room_a, room_b = "cut@conference.alpha.test", "cut\\40conference.alpha.test@" + MIRROR

    async def body(clients):
        alice = await login(p.a, "alice", "cut")
        carol = await login(p.b, "carol", "cut")
        dave = await login(p.b, "dave", "cut")
        clients += [alice, carol, dave]
        await enter(alice, room_a, "alice")
        await alice.muc.set_room_config(JID(room_a), Form(), timeout=WAIT)
        await enter(carol, room_b, "carol")
        await enter(dave, room_b, "dave")
        await wait_until(lambda: available(alice, room_a, "dave") and available(carol, room_b, "alice"),
                         WAIT, "everyone in", clients)
        for r in p.relays:
            r.cut()
        # A dead s2s connection swallows what is written to it last without a word: the
        # master learns of the loss when its next broadcast bounces, the mirror when it does
        # or when its keepalive goes unanswered (dmuc_mirror::PING_*).
        alice.send_message(mto=JID(room_a), mbody=new_body("alice-early"), mtype="groupchat")
        said = [new_body("carol-1"), new_body("dave-1"), new_body("carol-2")]
        carol.send_message(mto=JID(room_b), mbody=said[0], mtype="groupchat")
        await asyncio.sleep(1)
        alice.send_message(mto=JID(room_a), mbody=new_body("alice-early"), mtype="groupchat")
        await wait_until(lambda: gone_333(alice, room_a, "carol") and gone_333(alice, room_a, "dave"),
                         LOSS, "the mirror's users gone for alice", clients)
        await wait_until(lambda: gone_333(carol, room_b, "alice") and gone_333(dave, room_b, "alice"),
                         LOSS, "alice gone for the mirror's users", clients)
        missed = new_body("alice-during")
        alice.send_message(mto=JID(room_a), mbody=missed, mtype="groupchat")
        dave.send_message(mto=JID(room_b), mbody=said[1], mtype="groupchat")
        carol.send_message(mto=JID(room_b), mbody=said[2], mtype="groupchat")
        await wait_until(lambda: set(said) <= set(groupchat_bodies(dave, room_b))
                         and set(said) <= set(groupchat_bodies(carol, room_b)),
                         WAIT, "the mirror's users hear each other", clients)
        during = {"dave": list(groupchat_bodies(dave, room_b))}
        for r in p.relays:
            r.restore()
        await wait_until(lambda: available(alice, room_a, "carol") and available(alice, room_a, "dave")
                         and available(carol, room_b, "alice") and available(dave, room_b, "alice"),
                         3 * WAIT, "presence back both ways", clients)
        await wait_until(lambda: set(said) <= set(groupchat_bodies(alice, room_a)),
                         WAIT, "what was said meanwhile at alice", clients)
        after = new_body("alice-after")
        alice.send_message(mto=JID(room_a), mbody=after, mtype="groupchat")
        await wait_until(lambda: after in groupchat_bodies(carol, room_b) and after in groupchat_bodies(dave, room_b),
                         WAIT, "traffic flows again", clients)
        # What alice said while the link was down reaches the mirror's users with the
        # history the mirror asks for again (delayed).
        await wait_until(lambda: missed in all_bodies(carol, room_b) and missed in all_bodies(dave, room_b),
                         WAIT, "alice's message from the cut at carol and dave", clients)
        await asyncio.sleep(QUIET)
        alices = {n: [b for b in all_bodies(c, room_b) if b.startswith("alice-")]
                  for n, c in (("carol", carol), ("dave", dave))}
        return said, during, {n: groupchat_bodies(c, r) for n, (c, r) in
                              {"alice": (alice, room_a), "carol": (carol, room_b),
                               "dave": (dave, room_b)}.items()}, alices

    said, during, heard, alices = scenario(body)
    # Everything alice said reached each of them exactly once (live or after the cut).
    for nick, got in alices.items():
        assert len(got) == len(set(got)) == 4, f"{nick}: {got}"

    def per_sender(bodies):
        """Order per sender (messages of different clients may cross at the server)."""
        return {who: [b for b in bodies if b.startswith(who)] for who in ("carol", "dave")}

    local = [b for b in during["dave"] if b in said]
    assert sorted(local) == sorted(said), f"local talk during the cut: {said} vs {local}"
    assert per_sender(local) == per_sender(said)
    at_alice = [b for b in heard["alice"] if b in said]
    assert sorted(at_alice) == sorted(said), f"once each at the master: {heard['alice']}"
    assert per_sender(at_alice) == per_sender(said), "in order per sender"
    for nick in ("carol", "dave"):
        for b in said:
            assert heard[nick].count(b) == 1, f"{nick} got {b} {heard[nick].count(b)} times"


def test_a_quiet_room_notices_a_lost_link_from_both_sides(dmuc):
    """Nobody says anything after the link goes: the master's keepalive to the mirror
    (dmuc::PING_INTERVAL_US) and the mirror's to the master find the loss all the same, and
    each side sees the other's occupants leave (333); when the link is back, everyone is
    there again."""
    p, master, mirror = dmuc

    async def body(clients):
        alice, carol, room_a, room_b = await alice_opens(p, clients, "quiet")
        await enter(carol, room_b, "carol")
        await wait_until(lambda: available(alice, room_a, "carol"), WAIT, "carol in", clients)
        for r in p.relays:
            r.cut()
        await wait_until(lambda: gone_333(alice, room_a, "carol"), LOSS,
                         "carol gone for alice, nobody speaking", clients)
        await wait_until(lambda: gone_333(carol, room_b, "alice"), LOSS,
                         "alice gone for carol, nobody speaking", clients)
        for r in p.relays:
            r.restore()
        await wait_until(lambda: available(alice, room_a, "carol") and available(carol, room_b, "alice"),
                         3 * WAIT, "presence back both ways", clients)

    scenario(body)


def test_bad_input_to_the_mirror_through_a_real_server(dmuc):
    """What a client of B sends to the mirror domain that makes no sense, and what it gets."""
    p, master, mirror = dmuc
    from slixmpp.exceptions import IqError
    import xml.etree.ElementTree as ET

    async def iq_error(c, to, payload, ty="set"):
        iq = c.make_iq(ito=to, itype=ty)
        iq.xml.append(ET.fromstring(payload))
        try:
            await iq.send(timeout=WAIT)
        except IqError as e:
            return e.iq["error"]["type"], e.iq["error"]["condition"]
        return "result", None

    async def body(clients):
        alice = await login(p.a, "alice", "bad")
        carol = await login(p.b, "carol", "bad")
        clients += [alice, carol]
        await enter(alice, "badin@conference.alpha.test", "alice")
        await alice.muc.set_room_config(JID("badin@conference.alpha.test"), Form(), timeout=WAIT)
        got = {}
        # A configuration push from a client, not from a master room the mirror mirrors.
        got["config push"] = await iq_error(
            carol, MIRROR, "<config xmlns='urn:xmpp:dmuc:0'/>")
        got["roster push"] = await iq_error(
            carol, MIRROR, "<roster xmlns='urn:xmpp:dmuc:0'/>")
        # An address on the mirror domain that is no escaped room JID.
        got["not a room"] = await iq_error(
            carol, f"nonsense@{MIRROR}", "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            ty="get")
        # A history request straight from a user (not a mirror) to the master room.
        got["history from a user"] = await iq_error(
            carol, "badin@conference.alpha.test",
            "<room xmlns='urn:xmpp:dmuc:0' id='badin@conference.alpha.test'>"
            "<history xmlns='http://jabber.org/protocol/muc'/></room>", ty="get")
        # A message to a room through the mirror without having entered it.
        carol.inbox.clear()
        carol.send_message(mto=JID(LOCAL_ROOM), mbody="hello?", mtype="groupchat")
        await wait_until(lambda: any(s.name == "message" and s["type"] == "error" for s in carol.inbox),
                         WAIT, "the refusal", clients)
        err = next(s for s in carol.inbox if s.name == "message" and s["type"] == "error")
        got["message before entering"] = (err["error"]["type"], err["error"]["condition"])
        return got

    got = scenario(body)
    assert got["config push"] == ("cancel", "service-unavailable"), got
    assert got["roster push"] == ("cancel", "service-unavailable"), got
    assert got["not a room"] == ("cancel", "item-not-found"), got
    # Only an allowed mirror's domain is asked about history: to anyone else the room has
    # no such service.
    assert got["history from a user"] == ("cancel", "service-unavailable"), got
    assert got["message before entering"] == ("modify", "not-acceptable"), got
    print(got)


def test_the_archive_of_a_master_room_through_the_mirror(dmuc):
    """A user behind the mirror queries the room's archive (XEP-0313) at the room's address on
    the mirror: the answer comes back through the mirror, from that address, with every
    message once, shown from that address too, and the room's stanza-ids by that address."""
    from test_mix_misc import mam
    p, master, mirror = dmuc
    room_a, room_b = rooms("archive")

    async def body(clients):
        alice, carol, _, _ = await alice_opens(p, clients, "archive")
        said = [new_body("archived") for _ in range(3)]
        for b in said:
            alice.send_message(mto=JID(room_a), mbody=b, mtype="groupchat")
        await wait_until(lambda: set(said) <= set(groupchat_bodies(alice, room_a)), WAIT,
                         "alice's messages back at alice", clients)
        await enter(carol, room_b, "carol")
        live = new_body("live")
        alice.send_message(mto=JID(room_a), mbody=live, mtype="groupchat")
        await wait_until(lambda: live in groupchat_bodies(carol, room_b), WAIT, "live at carol", clients)
        live_sid = next(s for s in carol.inbox if s.name == "message" and s["body"] == live) \
            .xml.find("{urn:xmpp:sid:0}stanza-id")
        archive = await mam(carol, room_b)
        return said + [live], archive, live_sid

    said, archive, live_sid = scenario(body)
    bodies = [m.findtext("{jabber:client}body") for m in archive.values()]
    assert bodies == said, bodies
    assert all(m.get("from") == f"{room_b}/alice" for m in archive.values())
    assert live_sid is not None and live_sid.get("by") == room_b
    # The live message's stanza-id is its archive id: a client resumes from it.
    assert live_sid.get("id") == list(archive)[-1]


def test_users_enter_again_after_the_mirror_restarts(dmuc):
    """The mirror keeps its rooms in memory: after a restart it knows none. The master's next
    broadcast bounces off it, and the master removes its users (333). A user behind it learns
    it with a XEP-0410 self-ping, enters again, and takes part as before. (Last in this module:
    it replaces the fixture's mirror.)"""
    p, master, mirror = dmuc
    room_a, room_b = rooms("restart")
    from test_mix_misc import raw_iq

    async def body(clients):
        alice, carol, _, _ = await alice_opens(p, clients, "restart")
        await enter(carol, room_b, "carol")
        mirror.stop()
        again = MixdOn(p.b, muc="conference.beta.test",
                       extra_env={"MIXD_DMUC_MIRROR_DOMAIN": MIRROR})
        clients.append(again)  # stopped below
        again.wait_healthy()
        await asyncio.sleep(1)  # the component link is up before the broadcast comes
        alice.send_message(mto=JID(room_a), mbody=new_body("after-restart"), mtype="groupchat")

        await wait_until(lambda: gone_333(alice, room_a, "carol"), WAIT, "carol gone for alice (333)",
                         clients[:2])
        # XEP-0410: the self-ping tells carol she is no longer in.
        try:
            await raw_iq(carol, f"{room_b}/carol", "<ping xmlns='urn:xmpp:ping'/>", "get")
            ping = ("result", None)
        except Exception as e:  # noqa: BLE001
            iq = getattr(e, "iq", None)
            ping = (iq["error"]["type"], iq["error"]["condition"]) if iq is not None else (type(e).__name__, None)
        await enter(carol, room_b, "carol")
        back = new_body("back")
        alice.send_message(mto=JID(room_a), mbody=back, mtype="groupchat")
        await wait_until(lambda: back in groupchat_bodies(carol, room_b), WAIT, "alice's message at carol",
                         clients[:2])
        return ping

    async def go():
        clients = []
        try:
            return await body(clients)
        finally:
            for c in clients:
                if isinstance(c, MixdOn):
                    c.stop()
            await logout([c for c in clients if not isinstance(c, MixdOn)])

    ping = run(go())
    assert ping == ("cancel", "not-acceptable"), ping
