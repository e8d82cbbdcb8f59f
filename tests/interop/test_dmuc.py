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

import pytest
from slixmpp import JID
from slixmpp.exceptions import PresenceError
from slixmpp.plugins.xep_0004 import Form

from federation import MixdOn, Pair, groupchat_bodies, login, logout, new_body, wait_until

WAIT = 15.0
QUIET = 1.5
MASTER_ROOM = "dmuc@conference.alpha.test"
MIRROR = "mirror.beta.test"
# The master room seen through the mirror (XEP-0106: '@' is \40).
LOCAL_ROOM = "dmuc\\40conference.alpha.test@" + MIRROR

_LOOP = asyncio.new_event_loop()


def run(coro):
    return _LOOP.run_until_complete(coro)


@pytest.fixture(scope="module")
def dmuc():
    """Both servers, the master mixd on A and the mirror mixd on B."""
    p = Pair()
    p.env["B_EXTRA"] = "conference.beta.test"
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


async def enter(c, room: str, nick: str):
    """(self-presence, occupants' presences) of c entering room as nick."""
    pres, _subject, occupants, _history = await c.muc.join_muc_wait(JID(room), nick, timeout=WAIT)
    return pres, occupants


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
        seen["carol"] = await enter(carol, LOCAL_ROOM, "carol")
        seen["dave"] = await enter(dave, LOCAL_ROOM, "dave")
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
    pres, occupants = seen["carol"]
    assert pres["from"] == JID(f"{LOCAL_ROOM}/carol")
    assert 110 in pres["muc"]["status_codes"]
    assert {o["from"].resource for o in occupants} >= {"alice", "bob"}
    for nick, got in heard.items():
        for b in bodies.values():
            assert got.count(b) == 1, f"{nick} received {b} {got.count(b)} times: {got}"
    assert froms[bodies["alice"]] == f"{LOCAL_ROOM}/alice"
    assert froms[bodies["dave"]] == f"{LOCAL_ROOM}/dave"
    assert any(e["error"]["condition"] == "not-acceptable" for e in nick_errors), (
        nick_change, [str(e) for e in nick_errors])
