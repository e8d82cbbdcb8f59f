"""Issue 4, "done when": slixmpp's MAM plugin (xep_0313, with xep_0059 result set paging) through
Prosody pages a channel of 10,000 messages forwards and backwards, receives each message exactly
once, in order, with `complete` true on the last page only; the same on the room JID of the MUC
mirror (the same archive).

The 10,000 messages are real groupchat messages sent by a MIX participant through Prosody; the test
waits for each batch's reflections, so that the archive holds all of them when paging starts.
"""
import asyncio

import pytest
from slixmpp import JID

from conftest import MIX, MUC, Mixd, Server
from test_mix import join, scenario

N = 10_000
PAGE = 250  # mixd's cap (a larger max is a policy-violation)
BATCH = 500
WAIT = 60.0

@pytest.fixture(scope="module")
def prosody():
    server = Server("prosody")
    server.run("start")
    mixd = Mixd(server)
    try:
        mixd.wait_healthy()
        yield server
    finally:
        mixd.stop()
        server.run("stop")


async def fill(c, chan: str):
    """N groupchat messages `m00000`... from c, each batch reflected before the next goes."""
    got = set()

    def seen(msg):
        if msg["type"] == "groupchat" and msg["from"].bare == chan and msg["body"].startswith("m"):
            got.add(msg["body"])

    c.add_event_handler("message", seen)
    for start in range(0, N, BATCH):
        for i in range(start, min(N, start + BATCH)):
            c.send_message(mto=JID(chan), mbody=f"m{i:05d}", mtype="groupchat")
        end = asyncio.get_running_loop().time() + WAIT
        while len(got) < min(N, start + BATCH):
            if asyncio.get_running_loop().time() > end:
                raise AssertionError(f"only {len(got)} of {start + BATCH} reflected")
            await asyncio.sleep(0.05)
        c.inbox.clear()
    c.del_event_handler("message", seen)


async def pages(c, jid: str, reverse: bool):
    """Every page of jid's archive as slixmpp's iterator brings it: [(bodies, complete)]."""
    out = []
    it = c.plugin["xep_0313"].retrieve(jid=JID(jid), iterator=True, reverse=reverse,
                                       rsm={"max": PAGE})
    async for page in it:
        bodies = [r["mam_result"]["forwarded"]["stanza"]["body"] for r in page["mam"]["results"]]
        # (slixmpp gives the attribute as it came: 'true', or nothing.)
        complete = str(page["mam_fin"]["complete"]).lower() in ("true", "1")
        out.append((bodies, complete))
        c.inbox.clear()
    return out


def check(paged, reverse: bool, where: str):
    bodies = [b for p, _ in paged for b in (reversed(p) if reverse else p)]
    expected = [f"m{i:05d}" for i in range(N)]
    if reverse:
        expected.reverse()
    assert len(bodies) == N, f"{where}: {len(bodies)} messages"
    assert len(set(bodies)) == N, f"{where}: a message came twice"
    assert bodies == expected, f"{where}: out of order"
    flags = [complete for _, complete in paged]
    assert flags[-1] is True and not any(flags[:-1]), f"{where}: complete flags {flags}"
    assert all(len(p) == PAGE for p, _ in paged[:-1]), f"{where}: short page before the last"


def test_xep_0313_pages_ten_thousand_messages_both_ways_on_both_faces(prosody):
    async def body(clients):
        alice = await clients.login("alice")
        alice.register_plugin("xep_0313")
        chan = await alice.plugin["xep_0369"].create_channel(JID(MIX), "deep", timeout=WAIT)
        chan = f"{chan}@{MIX}"
        await join(alice, chan, "alice")
        await fill(alice, chan)
        room = chan.replace(f"@{MIX}", f"@{MUC}")
        return {
            ("channel", False): await pages(alice, chan, False),
            ("channel", True): await pages(alice, chan, True),
            ("room", False): await pages(alice, room, False),
            ("room", True): await pages(alice, room, True),
        }

    results = scenario(prosody, body)
    for (face, reverse), paged in results.items():
        check(paged, reverse, f"{face} {'backwards' if reverse else 'forwards'}")
        assert len(paged) == N // PAGE
