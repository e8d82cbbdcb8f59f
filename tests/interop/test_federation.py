"""Two real Prosody 0.12 servers federating over s2s on loopback (scripts/prosody-pair-env.sh): the
test bed of DMUC (issue 7), here without DMUC.

- a chat message from alice@alpha.test reaches bob@beta.test, and the answer comes back;
- plain MUC across the link: mixd attached to server A serves conference.alpha.test; a user of A
  creates a room (instant room, XEP-0045 §10.1.2), users of B enter it across s2s, each occupant
  speaks once, and every occupant receives every message exactly once and sees every other
  occupant's presence.
"""
import asyncio

import pytest

from federation import MixdOn, Pair, groupchat_bodies, login, logout, new_body, wait_until
from slixmpp import JID
from slixmpp.plugins.xep_0004 import Form

WAIT = 15.0
QUIET = 1.5  # how long nothing more may arrive after the last expected stanza

_LOOP = asyncio.new_event_loop()


def run(coro):
    return _LOOP.run_until_complete(coro)


@pytest.fixture(scope="module")
def pair():
    """Servers A (alpha.test) and B (beta.test), mixd attached to A."""
    p = Pair()
    p.start()
    mixd = None
    try:
        mixd = MixdOn(p.a)
        mixd.wait_healthy()
        yield p, mixd
    finally:
        if mixd is not None:
            mixd.stop()
        p.stop()
        # slixmpp leaves tasks behind after disconnecting: end them quietly.
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


def test_chat_message_crosses_s2s(pair):
    p, _mixd = pair

    async def body(clients):
        alice = await login(p.a, "alice", "desk", muc=False)
        bob = await login(p.b, "bob", "phone", muc=False)
        clients += [alice, bob]
        hello, back = new_body("hello"), new_body("back")
        alice.send_message(mto=p.b.jid("bob", "phone"), mbody=hello, mtype="chat")
        await wait_until(lambda: any(s.name == "message" and s["body"] == hello for s in bob.inbox),
                         WAIT, "alice's message at bob")
        got = next(s for s in bob.inbox if s.name == "message" and s["body"] == hello)
        bob.send_message(mto=got["from"], mbody=back, mtype="chat")
        await wait_until(lambda: any(s.name == "message" and s["body"] == back for s in alice.inbox),
                         WAIT, "bob's answer at alice")
        return got

    got = scenario(body)
    assert got["from"] == JID(p.a.jid("alice", "desk"))
    assert got["type"] == "chat"
    log_a, log_b = p.log("a"), p.log("b")
    assert "s2s connection alpha.test->beta.test complete" in log_a
    assert "s2s connection alpha.test->beta.test complete" in log_b


def test_muc_room_on_a_with_occupants_on_b(pair):
    p, _mixd = pair
    room = JID(f"fed-room@{p.a.muc}")

    async def body(clients):
        alice = await login(p.a, "alice")
        bob = await login(p.a, "bob")
        carol = await login(p.b, "carol")
        dave = await login(p.b, "dave")
        clients += [alice, bob, carol, dave]
        nicks = {alice: "alice", bob: "bob", carol: "carol", dave: "dave"}

        created = await alice.muc.join_muc_wait(room, "alice", timeout=WAIT)
        codes = created[0]["muc"]["status_codes"]
        assert 201 in codes, f"room existed already: {created[0]}"
        await alice.muc.set_room_config(room, Form(), timeout=WAIT)  # instant room
        for c in (bob, carol, dave):
            pres = (await c.muc.join_muc_wait(room, nicks[c], timeout=WAIT))[0]
            assert 110 in pres["muc"]["status_codes"], pres

        # Everyone sees everyone (the remote occupants' real JIDs on beta.test: non-anonymous room).
        def roster_complete():
            return all(set(c.muc.get_roster(room)) >= set(nicks.values()) for c in clients)
        await wait_until(roster_complete, WAIT, "every occupant in every roster", clients)
        assert alice.muc.get_jid_property(room, "carol", "jid").bare == p.b.jid("carol")

        sent = {}
        for c in clients:
            sent[nicks[c]] = new_body(nicks[c])
            c.send_message(mto=room, mbody=sent[nicks[c]], mtype="groupchat")

        def everything_arrived():
            return all(set(groupchat_bodies(c, room.bare)) >= set(sent.values()) for c in clients)
        await wait_until(everything_arrived, WAIT, "every message at every occupant", clients)
        await asyncio.sleep(QUIET)
        received = {nicks[c]: groupchat_bodies(c, room.bare) for c in clients}
        senders = {nicks[c]: {s["body"]: s["from"].resource for s in c.inbox
                              if s.name == "message" and s["type"] == "groupchat"}
                   for c in clients}
        return sent, received, senders

    sent, received, senders = scenario(body)
    # The occupants on B really came across s2s, in both directions.
    log_a = p.log("a")
    assert "s2s connection beta.test->conference.alpha.test complete" in log_a
    assert "s2s connection conference.alpha.test->beta.test complete" in log_a
    for who, bodies in received.items():
        assert sorted(bodies) == sorted(sent.values()), f"{who} received {bodies}"
        for nick, b in sent.items():
            assert senders[who][b] == nick, f"{who}: {b} from {senders[who][b]}"
