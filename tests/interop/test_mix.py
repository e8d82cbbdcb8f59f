"""MIX (XEP-0369 core:1, XEP-0403 presence, XEP-0405 PAM) through a real server, with slixmpp's own
MIX plugins (xep_0369, xep_0403, xep_0405).

Clients join *directly* (from their full JID) on both servers. Prosody 0.12 has no MIX-PAM, so mixd
delivers to the full JIDs that joined. Through ejabberd 23.01, mod_mix_pam is also tested. What
ejabberd does there was measured on the wire; see docs/ejabberd-mix-pam.md. Where ejabberd itself gets
it wrong, the test is a strict xfail that states what was observed.

Every test uses its own channel, so the tests do not depend on each other within one deployment.
"""
import asyncio
import uuid
from datetime import datetime

import pytest
import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0369 import stanza as mix_stanza
from slixmpp.xmlstream import ET

from conftest import MIX, make_client

NS_CORE = "urn:xmpp:mix:core:1"
NS_PRESENCE = "urn:xmpp:mix:presence:0"
NS_PAM = "urn:xmpp:mix:pam:2"
NS_SID = "urn:xmpp:sid:0"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
MESSAGES = "urn:xmpp:mix:nodes:messages"
PARTICIPANTS = "urn:xmpp:mix:nodes:participants"
INFO = "urn:xmpp:mix:nodes:info"
PRESENCE = "urn:xmpp:mix:nodes:presence"

POSITIVE_WAIT = 10.0  # waiting for something that must arrive
NEGATIVE_WAIT = 2.0   # making sure something does not arrive

_LOOP = asyncio.new_event_loop()


def run(coro):
    return _LOOP.run_until_complete(coro)


# ---------------------------------------------------------------------------------------------
# Helpers


class Clients:
    """Logs clients in (with the MIX plugins, initial presence sent) and logs them all out at the
    end, even when the test fails. Every client keeps what it received in `inbox`."""

    def __init__(self, server):
        self.server = server
        self.all = []

    async def login(self, user: str, resource: str | None = None, presence: bool = True,
                    priority: int = 0) -> slixmpp.ClientXMPP:
        resource = resource or f"mix-{uuid.uuid4().hex[:6]}"
        c = make_client(f"{user}@localhost/{resource}", user)
        for p in ("xep_0060", "xep_0369", "xep_0403", "xep_0405"):
            c.register_plugin(p)
        c.inbox = []
        c.arrived = asyncio.Event()

        def keep(st, c=c):
            if getattr(st, "name", None) in ("message", "presence", "iq"):
                c.inbox.append(st)
                c.arrived.set()
            return st

        c.add_filter("in", keep)
        started = asyncio.get_running_loop().create_future()
        c.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
        c.add_event_handler("failed_auth", lambda e: started.done() or started.set_exception(RuntimeError(e)))
        c.connect("127.0.0.1", self.server.c2s_port)
        self.all.append(c)
        await asyncio.wait_for(started, 15)
        if presence:
            c.send_presence(ppriority=priority)
        return c

    async def close(self):
        for c in self.all:
            try:
                await asyncio.wait_for(c.disconnect(), 5)
            except Exception:  # noqa: BLE001  (best effort at teardown)
                pass


def scenario(server, body):
    """Run `body(clients)` on the module's loop; every client is logged out afterwards."""
    async def go():
        clients = Clients(server)
        try:
            return await body(clients)
        finally:
            await clients.close()
    return run(go())


async def wait_for(c, pred, timeout: float = POSITIVE_WAIT, what: str = "a matching stanza"):
    """The first stanza in c's inbox that matches pred (removed from the inbox); waits for it."""
    end = asyncio.get_running_loop().time() + timeout
    while True:
        c.arrived.clear()
        for i, st in enumerate(c.inbox):
            if pred(st):
                del c.inbox[i]
                return st
        left = end - asyncio.get_running_loop().time()
        if left <= 0:
            seen = "\n  ".join(str(s) for s in c.inbox[-8:])
            raise AssertionError(f"{c.boundjid.full}: no {what} within {timeout}s; last received:\n  {seen}")
        try:
            await asyncio.wait_for(c.arrived.wait(), left)
        except asyncio.TimeoutError:
            pass


async def nothing(c, pred, wait: float = NEGATIVE_WAIT, what: str = "stanza"):
    """Asserts that no stanza matching pred arrives at c within `wait` seconds."""
    await asyncio.sleep(wait)
    bad = [str(s) for s in c.inbox if pred(s)]
    assert not bad, f"{c.boundjid.full}: unexpected {what}: {bad}"


def create_channel(mixd, name: str, **kw) -> str:
    """A channel made through the admin HTTP API; returns its MIX JID."""
    code, body = mixd.http("POST", "/channels", {"name": name, **kw})
    assert code in (201, 409), body
    return f"{name}@{MIX}"


class Joined:
    def __init__(self, el):
        assert el is not None, "join result without <join xmlns='urn:xmpp:mix:core:1'/>"
        self.id = el.get("id")
        self.jid = el.get("jid")
        self.nick = el.findtext(f"{{{NS_CORE}}}nick")
        self.nodes = {s.get("node") for s in el.findall(f"{{{NS_CORE}}}subscribe")}


async def join(c, chan: str, nick: str, nodes=(MESSAGES, PARTICIPANTS)) -> Joined:
    """Direct join from c's full JID. This is the IQ that xep_0369.join_channel sends, built with the
    plugin's stanzas, but it returns the whole result (join_channel drops nick, id and jid)."""
    iq = c.make_iq_set(ito=chan)
    iq["mix_join"]["nick"] = nick
    for n in nodes:
        sub = mix_stanza.Subscribe()
        sub["node"] = n
        iq["mix_join"].append(sub)
    res = await iq.send(timeout=POSITIVE_WAIT)
    return Joined(res.xml.find(f"{{{NS_CORE}}}join"))


def send_groupchat(c, chan: str, body: str) -> str:
    """Sends a groupchat message with an XEP-0359 origin-id; returns the origin-id."""
    oid = uuid.uuid4().hex
    m = c.make_message(mto=chan, mbody=body, mtype="groupchat")
    m.xml.append(ET.Element(f"{{{NS_SID}}}origin-id", {"id": oid}))
    m.send()
    return oid


def groupchat(chan: str, body: str | None = None):
    def pred(s):
        return (s.name == "message" and s["type"] == "groupchat" and s["from"].bare == chan
                and (body is None or s["body"] == body))
    return pred


class Reflection:
    """What a user sees in a message reflected by the channel."""

    def __init__(self, msg):
        mix = msg.xml.find(f"{{{NS_CORE}}}mix")
        assert mix is not None, f"reflection without <mix xmlns='{NS_CORE}'/>: {msg}"
        sid = msg.xml.find(f"{{{NS_SID}}}stanza-id")
        assert sid is not None, f"reflection without <stanza-id xmlns='{NS_SID}'/>: {msg}"
        oid = msg.xml.find(f"{{{NS_SID}}}origin-id")
        self.msg = msg
        self.nick = mix.findtext(f"{{{NS_CORE}}}nick")
        self.jid = mix.findtext(f"{{{NS_CORE}}}jid")
        self.stanza_id = sid.get("id")
        self.stanza_id_by = sid.get("by")
        self.origin_id = oid.get("id") if oid is not None else None
        self.id = msg["id"]
        self.sender = msg["from"].resource  # the sender's participant id
        self.to = str(msg["to"])
        self.body = msg["body"]


def participants_event(chan: str, kind: str, item_id: str | None = None):
    """A pubsub notification from chan on the participants node with an <item/> or <retract/>
    (for participant item_id, if given)."""
    def pred(s):
        if s.name != "message" or s["from"].bare != chan:
            return False
        items = s.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
        if items is None or items.get("node") != PARTICIPANTS:
            return False
        return any(item_id is None or el.get("id") == item_id
                   for el in items.findall(f"{{{NS_EVENT}}}{kind}"))
    return pred


def event_item(msg, kind: str = "item"):
    return msg.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items/{{{NS_EVENT}}}{kind}")


def error_condition(e: IqError):
    return e.iq["error"]["type"], e.iq["error"]["condition"]


# ---------------------------------------------------------------------------------------------
# Channels


def test_create_channel_with_xep_0369(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        created = await alice.plugin["xep_0369"].create_channel(JID(MIX), "forge", timeout=POSITIVE_WAIT)
        joined = await join(alice, f"{created}@{MIX}", "smith")
        return created, joined

    created, joined = scenario(server, body)
    assert created == "forge"
    assert joined.nick == "smith"
    code, listing = mixd.http("GET", "/channels")
    assert code == 200 and '"forge"' in listing, listing


def test_list_channels_shows_public_channels_only(deployment):
    server, mixd = deployment
    public = create_channel(mixd, "lc-open", display_name="Open", public=True)
    hidden = create_channel(mixd, "lc-hidden", display_name="Hidden", public=False)

    async def body(cl):
        alice = await cl.login("alice")
        return await alice.plugin["xep_0369"].list_channels(JID(MIX), timeout=POSITIVE_WAIT)

    jids = {str(j) for j, _name in scenario(server, body)}
    assert public in jids, jids
    assert hidden not in jids, jids


def test_get_channel_info(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "info-test", display_name="Info Test", description="About the info node")

    async def body(cl):
        alice = await cl.login("alice")
        await join(alice, chan, "alice", nodes=(MESSAGES, INFO))
        # get_channel_info takes no timeout of its own
        return await asyncio.wait_for(alice.plugin["xep_0369"].get_channel_info(JID(chan)), POSITIVE_WAIT)

    info = scenario(server, body)
    assert info is not None, "the info node has no item"
    assert info["Name"] == "Info Test"
    assert info["Description"] == "About the info node"
    assert isinstance(info["modified"], datetime)  # the item id is the time of the last change


# ---------------------------------------------------------------------------------------------
# Joining


def test_direct_join_result(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "join-result")

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        await join(bob, chan, "bob", nodes=(MESSAGES, PARTICIPANTS))
        joined = await join(alice, chan, "alice", nodes=(MESSAGES, PARTICIPANTS))
        note = await wait_for(bob, participants_event(chan, "item", joined.id),
                              what="participants item for alice")
        return joined, note

    joined, note = scenario(server, body)
    assert joined.nick == "alice"
    assert joined.nodes == {MESSAGES, PARTICIPANTS}
    assert joined.id and not set(joined.id) & set("@/#"), joined.id
    assert joined.jid == f"{joined.id}#{chan}"
    # Bob, already subscribed to the participants node, is told about the new participant.
    item = event_item(note)
    assert item.get("id") == joined.id
    assert item.findtext(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") == "alice"


def test_xep_0369_join_channel_call(deployment):
    """slixmpp's own join_channel() call. slixmpp 1.17 sends
    <join><nick/><subscribe><subscribe node='...'/>...</subscribe></join>: it appends the nodes to
    iq['mix_join']['subscribe'], which is one extra <subscribe> element with no node. The join must
    still succeed, and the user is then a participant under that nick."""
    server, mixd = deployment
    chan = create_channel(mixd, "plugin-join")

    async def body(cl):
        bob = await cl.login("bob")
        extra = await bob.plugin["xep_0369"].join_channel(JID(chan), "bob", {MESSAGES, PARTICIPANTS},
                                                          timeout=POSITIVE_WAIT)
        parts = await bob.plugin["xep_0369"].list_participants(JID(chan), timeout=POSITIVE_WAIT)
        return extra, parts

    extra, parts = scenario(server, body)
    assert extra == set()  # join_channel returns the nodes the result names beyond the request
    assert [nick for _id, nick, _jid in parts] == ["bob"], parts


def test_join_missing_channel_is_item_not_found(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        errors = []
        try:
            await join(alice, f"nosuch-channel@{MIX}", "alice")
        except IqError as e:
            errors.append(error_condition(e))
        try:
            await alice.plugin["xep_0369"].join_channel(JID(f"nosuch-channel@{MIX}"), "alice",
                                                        timeout=POSITIVE_WAIT)
        except IqError as e:
            errors.append(error_condition(e))
        return errors

    assert scenario(server, body) == [("cancel", "item-not-found")] * 2


# ---------------------------------------------------------------------------------------------
# Messages


def test_message_is_reflected_to_every_participant(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "reflect")

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        a = await join(alice, chan, "alice")
        b = await join(bob, chan, "bob")
        oid = send_groupchat(alice, chan, "hello coven")
        got = {}
        for c in (alice, bob):
            got[c.boundjid.full] = Reflection(await wait_for(c, groupchat(chan, "hello coven"),
                                                             what="reflection"))
        return a, b, oid, got

    a, b, oid, got = scenario(server, body)
    assert len(got) == 2
    stanza_ids = set()
    for full_jid, r in got.items():
        assert r.to == full_jid                     # delivered to the full JID that joined
        assert r.sender == a.id                     # from chan@mix/<alice's participant id>
        assert r.nick == "alice"
        assert r.jid == "alice@localhost"
        assert r.stanza_id_by == chan
        assert r.stanza_id and r.id == r.stanza_id  # the message id is the archive id
        assert r.origin_id == oid                   # the sender's origin-id is kept
        stanza_ids.add(r.stanza_id)
    assert len(stanza_ids) == 1, stanza_ids         # one archived message, one id for everybody


def test_two_resources_of_one_user_both_receive(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "two-resources")

    async def body(cl):
        a1 = await cl.login("alice", "phone")
        a2 = await cl.login("alice", "laptop")
        bob = await cl.login("bob")
        j1 = await join(a1, chan, "alice")
        j2 = await join(a2, chan, "alice")
        await join(bob, chan, "bob")
        send_groupchat(bob, chan, "to both of you")
        r1 = Reflection(await wait_for(a1, groupchat(chan, "to both of you"), what="reflection"))
        r2 = Reflection(await wait_for(a2, groupchat(chan, "to both of you"), what="reflection"))
        parts = await bob.plugin["xep_0369"].list_participants(JID(chan), timeout=POSITIVE_WAIT)
        return j1, j2, r1, r2, parts

    j1, j2, r1, r2, parts = scenario(server, body)
    assert r1.to == "alice@localhost/phone" and r2.to == "alice@localhost/laptop"
    assert r1.nick == r2.nick == "bob"
    # A participant is a bare JID (XEP-0369): one participant, one id, for both resources.
    assert j1.id == j2.id
    assert [nick for _id, nick, _jid in parts].count("alice") == 1, parts


def test_message_from_non_participant_is_refused(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "members-only")

    async def body(cl):
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        await join(bob, chan, "bob")
        send_groupchat(carol, chan, "let me in")
        err = await wait_for(carol, lambda s: s.name == "message" and s["type"] == "error"
                             and s["from"].bare == chan, what="error message")
        await nothing(bob, groupchat(chan, "let me in"), what="reflection of a non-participant's message")
        return err

    err = scenario(server, body)
    assert err["error"]["condition"] == "forbidden", err


# ---------------------------------------------------------------------------------------------
# Participants: nick, leave, subscriptions, list


def test_setnick_and_nick_conflict(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "nicks")

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        await join(alice, chan, "alice")
        await join(bob, chan, "bob")
        mix = alice.plugin["xep_0369"]
        new = await mix.set_nick(JID(chan), "alys", timeout=POSITIVE_WAIT)
        try:
            await bob.plugin["xep_0369"].set_nick(JID(chan), "alys", timeout=POSITIVE_WAIT)
            conflict = None
        except IqError as e:
            conflict = error_condition(e)
        send_groupchat(alice, chan, "call me alys")
        r = Reflection(await wait_for(bob, groupchat(chan, "call me alys"), what="reflection"))
        parts = await mix.list_participants(JID(chan), timeout=POSITIVE_WAIT)
        return new, conflict, r, parts

    new, conflict, r, parts = scenario(server, body)
    assert new == "alys"
    assert conflict == ("cancel", "conflict")
    assert r.nick == "alys"
    assert sorted(nick for _id, nick, _jid in parts) == ["alys", "bob"]


def test_leave_notifies_other_participants(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "leaving")

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        a = await join(alice, chan, "alice")
        await join(bob, chan, "bob", nodes=(MESSAGES, PARTICIPANTS))
        await alice.plugin["xep_0369"].leave_channel(JID(chan), timeout=POSITIVE_WAIT)
        retract = await wait_for(bob, participants_event(chan, "retract", a.id), what="participants retract")
        send_groupchat(bob, chan, "is she gone?")
        await wait_for(bob, groupchat(chan, "is she gone?"), what="own reflection")
        await nothing(alice, groupchat(chan, "is she gone?"), what="message after leaving")
        parts = await bob.plugin["xep_0369"].list_participants(JID(chan), timeout=POSITIVE_WAIT)
        return a, retract, parts

    a, retract, parts = scenario(server, body)
    assert event_item(retract, "retract").get("id") == a.id
    assert [nick for _id, nick, _jid in parts] == ["bob"], parts


def test_update_subscription(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "subscriptions")

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        a = await join(alice, chan, "alice", nodes=(MESSAGES,))
        await join(bob, chan, "bob", nodes=(MESSAGES,))
        failed = await alice.plugin["xep_0369"].update_subscription(
            JID(chan), subscribe={PARTICIPANTS}, unsubscribe={MESSAGES}, timeout=POSITIVE_WAIT)
        c = await join(carol, chan, "carol", nodes=(MESSAGES,))
        note = await wait_for(alice, participants_event(chan, "item", c.id),
                              what="participants item for carol")
        send_groupchat(bob, chan, "not for alice")
        await wait_for(bob, groupchat(chan, "not for alice"), what="own reflection")
        await nothing(alice, groupchat(chan, "not for alice"), what="message after unsubscribing")
        return a, failed, c, note

    a, failed, c, note = scenario(server, body)
    assert a.nodes == {MESSAGES}
    assert failed == (set(), set())  # slixmpp: (nodes not subscribed, nodes not unsubscribed)
    assert event_item(note).get("id") == c.id


def test_list_participants(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "roll-call")

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        a = await join(alice, chan, "alice")
        b = await join(bob, chan, "bob")
        return a, b, await alice.plugin["xep_0369"].list_participants(JID(chan), timeout=POSITIVE_WAIT)

    a, b, parts = scenario(server, body)
    assert sorted((pid, nick) for pid, nick, _jid in parts) == sorted([(a.id, "alice"), (b.id, "bob")])
    for pid, _nick, jid in parts:
        if jid:  # JID-visible channel: the participant's bare JID
            assert jid == {a.id: "alice@localhost", b.id: "bob@localhost"}[pid]


# ---------------------------------------------------------------------------------------------
# XEP-0403 presence


def test_presence_is_shared_with_presence_subscribers(deployment):
    server, mixd = deployment
    chan = create_channel(mixd, "presence")

    async def body(cl):
        alice = await cl.login("alice", "desk")
        bob = await cl.login("bob")
        a = await join(alice, chan, "alice", nodes=(MESSAGES, PRESENCE))
        await join(bob, chan, "bob", nodes=(MESSAGES, PARTICIPANTS, PRESENCE))
        want = f"{a.id}#{chan}".lower()

        def from_alice(s):
            return (s.name == "presence" and s["from"].bare.lower() == want
                    and s["from"].resource == "desk")

        alice.send_presence(pto=chan, pstatus="brewing")
        online = await wait_for(bob, lambda s: from_alice(s) and s["type"] != "unavailable",
                                what="alice's channel presence")
        alice.send_presence(pto=chan, ptype="unavailable")
        offline = await wait_for(bob, lambda s: from_alice(s) and s["type"] == "unavailable",
                                 what="alice's unavailable channel presence")
        return online, offline

    online, offline = scenario(server, body)
    mix = online.xml.find(f"{{{NS_PRESENCE}}}mix")
    assert mix is not None, online
    assert mix.findtext(f"{{{NS_PRESENCE}}}nick") == "alice"
    assert online["status"] == "brewing"
    assert offline["type"] == "unavailable"


# ---------------------------------------------------------------------------------------------
# ejabberd MIX-PAM (XEP-0405): docs/ejabberd-mix-pam.md


def need_pam(server):
    if server.kind != "ejabberd":
        pytest.skip("MIX-PAM: only ejabberd has it here (Prosody 0.12 has no mod_mix_pam)")


async def pam_join(c, chan: str, nick: str, nodes=(MESSAGES, PARTICIPANTS)):
    """xep_0405's client-join, built with the plugin's stanzas. Returns the <join/> of the result,
    found in either namespace, because ejabberd 23.01 answers with <client-join xmlns='urn:xmpp:mix:core:1'>."""
    iq = c.make_iq_set(ito=c.boundjid.bare)
    iq["client_join"]["channel"] = chan
    iq["client_join"]["mix_join"]["nick"] = nick
    for n in nodes:
        sub = mix_stanza.Subscribe()
        sub["node"] = n
        iq["client_join"]["mix_join"].append(sub)
    res = await iq.send(timeout=POSITIVE_WAIT)
    for ns in (NS_PAM, NS_CORE):
        el = res.xml.find(f"{{{ns}}}client-join/{{{NS_CORE}}}join")
        if el is None:
            el = res.xml.find(f"{{{ns}}}client-join/{{{ns}}}join")
        if el is not None:
            return Joined(el)
    raise AssertionError(f"client-join result without <join/>: {res}")


def test_ejabberd_pam_join_puts_channel_in_roster(deployment):
    server, mixd = deployment
    need_pam(server)
    chan = create_channel(mixd, "pam-roster")

    async def body(cl):
        alice = await cl.login("alice", "pam")
        bob = await cl.login("bob")
        capable = await alice.plugin["xep_0405"].check_server_capability()
        joined = await pam_join(alice, chan, "alice")
        push = await wait_for(alice, lambda s: s.name == "iq" and s["type"] == "set"
                              and s.xml.find("{jabber:iq:roster}query") is not None
                              and chan in str(s), what="roster push")
        _contacts, channels = await alice.plugin["xep_0405"].get_mix_roster(timeout=POSITIVE_WAIT)
        await join(bob, chan, "bob")
        parts = await bob.plugin["xep_0369"].list_participants(JID(chan), timeout=POSITIVE_WAIT)
        return capable, joined, push, channels, parts

    capable, joined, push, channels, parts = scenario(server, body)
    assert capable
    assert joined.nick == "alice"
    pid, _, rest = (joined.jid or "").partition("#")
    assert pid and rest == chan, joined.jid  # ejabberd drops id='' and rebuilds jid='<id>#chan@mix'
    assert push is not None
    mine = [i for i in channels if i["jid"] == JID(chan)]
    assert len(mine) == 1, [str(i) for i in channels]
    assert mine[0]["channel"]["participant-id"] == pid
    assert mine[0]["subscription"] == "both"  # what mod_mix_pam's roster hook reports
    # mixd made alice (joined from her bare JID, through ejabberd) a participant with that id.
    assert (pid, "alice") in {(p, n) for p, n, _j in parts}, parts


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "ejabberd 23.01 answers a client-join with <client-join xmlns='urn:xmpp:mix:core:1'><join "
    "jid='ID#chan@mix'>...</join></client-join>: mod_mix_pam copies the inner join's namespace into "
    "client-join instead of urn:xmpp:mix:pam:2. slixmpp's xep_0405.join_channel therefore finds no "
    "client-join and reports every requested node as not subscribed"))
def test_ejabberd_pam_join_channel_reports_subscriptions(deployment):
    server, mixd = deployment
    need_pam(server)
    chan = create_channel(mixd, "pam-plugin")

    async def body(cl):
        carol = await cl.login("carol")
        return await carol.plugin["xep_0405"].join_channel(JID(chan), "carol", {MESSAGES, PARTICIPANTS},
                                                           timeout=POSITIVE_WAIT)

    assert scenario(server, body) == set()  # no node failed to subscribe


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "XEP-0405 §6 (PAM-02): the channel sends to a PAM participant's bare JID and the user's server "
    "delivers to its MIX-capable resources. mixd does exactly that; ejabberd 23.01 bounces it "
    "(service-unavailable 'User session not found': mod_mix_pam's fan-out never matches a namespaced "
    "<mix/>). mixd does not work around the server (README, compatibility notes)"))
def test_ejabberd_pam_messages_reach_resources_that_come_online(deployment):
    """What a PAM user expects: a resource online after the PAM join receives the channel's
    messages. Fails through ejabberd 23.01 (see the xfail reason); passes on a server that
    implements XEP-0405 delivery."""
    server, mixd = deployment
    need_pam(server)
    chan = create_channel(mixd, "pam-messages")

    async def body(cl):
        first = await cl.login("alice", "pam-first")
        await pam_join(first, chan, "alice")
        later = await cl.login("alice", "pam-later")  # initial presence -> ejabberd tells the channel
        # Same c2s process, same component link: when this answer arrives, mixd has had the presence.
        await later.plugin["xep_0030"].get_info(jid=chan, timeout=POSITIVE_WAIT)
        bob = await cl.login("bob")
        b = await join(bob, chan, "bob")
        send_groupchat(bob, chan, "hello pam")
        got = Reflection(await wait_for(later, groupchat(chan, "hello pam"), what="reflection"))
        return b, got

    b, got = scenario(server, body)
    assert got.to == "alice@localhost/pam-later"
    assert got.sender == b.id and got.nick == "bob"


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "ejabberd 23.01 sends the channel no presence when a resource that is already online joins through "
    "PAM, does not answer the channel's presence probes (the channel is in the roster only through "
    "mod_mix_pam's roster_get hook), and bounces groupchat to the bare JID (service-unavailable 'User "
    "session not found': mod_mix_pam's bounce_sm_packet fan-out never matches a namespaced <mix/>). "
    "So mixd cannot reach that resource until it sends presence again (unless its presence already "
    "reached the MIX domain through another channel joined through PAM)"))
def test_ejabberd_pam_messages_reach_the_resource_that_joined(deployment):
    # bob joins through PAM only here: no earlier PAM channel of his can have carried his presence
    # to the MIX domain, so nothing about his resources is known to mixd.
    server, mixd = deployment
    need_pam(server)
    chan = create_channel(mixd, "pam-same-session")

    async def body(cl):
        bob = await cl.login("bob", "pam-now")
        await pam_join(bob, chan, "bob")
        carol = await cl.login("carol")
        await join(carol, chan, "carol")
        send_groupchat(carol, chan, "are you there")
        await wait_for(carol, groupchat(chan, "are you there"), what="own reflection")
        await wait_for(bob, groupchat(chan, "are you there"), timeout=3, what="reflection")

    scenario(server, body)


def test_ejabberd_pam_leave_removes_participant_and_roster_item(deployment):
    server, mixd = deployment
    need_pam(server)
    chan = create_channel(mixd, "pam-leave")

    async def body(cl):
        alice = await cl.login("alice", "pam-leave")
        bob = await cl.login("bob")
        joined = await pam_join(alice, chan, "alice")
        await join(bob, chan, "bob", nodes=(MESSAGES, PARTICIPANTS))
        try:  # ejabberd 23.01 never answers (see the xfail below); the leave happens nonetheless
            await alice.plugin["xep_0405"].leave_channel(JID(chan), timeout=5)
        except IqTimeout:
            pass
        retract = await wait_for(bob, participants_event(chan, "retract", joined.jid.partition("#")[0]),
                                 what="participants retract")
        _contacts, channels = await alice.plugin["xep_0405"].get_mix_roster(timeout=POSITIVE_WAIT)
        return joined, retract, channels

    joined, retract, channels = scenario(server, body)
    assert event_item(retract, "retract").get("id") == joined.jid.partition("#")[0]
    assert JID(chan) not in [i["jid"] for i in channels]


@pytest.mark.xfail(strict=True, raises=IqTimeout, reason=(
    "ejabberd 23.01 never answers client-leave when the channel is a component: mod_mix_pam's "
    "process_leave_result matches a decoded #mix_leave{} but gets the raw <leave/> element, and "
    "crashes ('no function clause matching mod_mix_pam:process_iq_error'). The roster item is already "
    "deleted and no roster push is sent"))
def test_ejabberd_pam_client_leave_is_answered(deployment):
    server, mixd = deployment
    need_pam(server)
    chan = create_channel(mixd, "pam-leave-answer")

    async def body(cl):
        carol = await cl.login("carol", "pam-leave")
        await pam_join(carol, chan, "carol")
        await carol.plugin["xep_0405"].leave_channel(JID(chan), timeout=5)

    scenario(server, body)
