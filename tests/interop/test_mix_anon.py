"""MIX-ANON (XEP-0404) and traffic switched through a channel's encoded JIDs, through a real server
with slixmpp clients:

- XEP-0404 §6 private messages to `ID#channel@mix[/resource]`: delivered to the real JID with the
  sender's encoded JID as 'from', never archived, refused where the channel or the recipient
  disallows them;
- XEP-0403 §3.6 IQ relay: a request to an encoded JID reaches the target's client (which answers
  it itself: slixmpp answers pings and disco#info), the answer comes back from the JID addressed;
  vCard requests only where the target allows them (XEP-0404 §5);
- XEP-0404 §5 user preferences: get, set, and given with the join;
- JID-hidden channels (XEP-0404 §3, §4): no real JIDs in the participants node, messages,
  presence or archive; stand-in resources; the jidmap node for owners and administrators only;
  switching a live channel to hidden.

Participant ids are random, which is why this is here and not in a scansion script (the
deterministic refusals are in tests/scripts/mix_anon_bad_input.scs). Waiting for nothing is done
with a later stanza that must arrive instead of a sleep: the channel handles one sender's stanzas
in order and the server delivers them in order, so once the later one is there, the earlier one
would have been too.
"""
import asyncio
import uuid

from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from conftest import MIX
from test_mix import (MESSAGES, NS_CORE, NS_PRESENCE, NS_SID, PARTICIPANTS, POSITIVE_WAIT, PRESENCE,
                      Joined, Reflection, error_condition, event_item, groupchat, join, participants_event,
                      scenario, send_groupchat, wait_for)

NS_ANON = "urn:xmpp:mix:anon:0"
NS_ADMIN = "urn:xmpp:mix:admin:0"
NS_DATA = "jabber:x:data"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VCARD = "vcard-temp"
NS_VCARD4 = "urn:ietf:params:xml:ns:vcard-4.0"
CONFIG = "urn:xmpp:mix:nodes:config"
JIDMAP = "urn:xmpp:mix:nodes:jidmap"

DEFAULTS = {"JID Visibility": "default", "Private Messages": "allow", "vCard": "block",
            "Presence": "share"}


# ---------------------------------------------------------------------------------------------
# Helpers


def data_form(form_type: str, fields: dict, ftype: str = "submit"):
    x = ET.Element(f"{{{NS_DATA}}}x", {"type": ftype})
    ft = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": "FORM_TYPE", "type": "hidden"})
    ET.SubElement(ft, f"{{{NS_DATA}}}value").text = form_type
    for var, value in fields.items():
        f = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": var})
        ET.SubElement(f, f"{{{NS_DATA}}}value").text = value
    return x


def form_values(x) -> dict:
    """var -> value of every field of a form but FORM_TYPE."""
    assert x is not None, "no data form"
    return {f.get("var"): f.findtext(f"{{{NS_DATA}}}value")
            for f in x.findall(f"{{{NS_DATA}}}field") if f.get("var") != "FORM_TYPE"}


def form_type(x) -> str | None:
    for f in x.findall(f"{{{NS_DATA}}}field"):
        if f.get("var") == "FORM_TYPE":
            return f.findtext(f"{{{NS_DATA}}}value")
    return None


async def new_channel(owner, name: str, hidden: bool = False) -> str:
    """A channel created by `owner` (who becomes its owner, XEP-0369 §7.3.2); optionally made
    JID-hidden before anyone joins."""
    created = await owner.plugin["xep_0369"].create_channel(JID(MIX), name, timeout=POSITIVE_WAIT)
    chan = f"{created}@{MIX}"
    if hidden:
        await configure(owner, chan, {"JID Visibility": "jid-hidden"})
    return chan


async def configure(owner, chan: str, fields: dict):
    """XEP-0406 §5.2: the owner publishes a submit form (only these fields change) to the config
    node."""
    iq = owner.make_iq_set(ito=chan)
    ps = ET.SubElement(iq.xml, f"{{{NS_PUBSUB}}}pubsub")
    pub = ET.SubElement(ps, f"{{{NS_PUBSUB}}}publish", {"node": CONFIG})
    ET.SubElement(pub, f"{{{NS_PUBSUB}}}item").append(data_form(NS_ADMIN, fields))
    await iq.send(timeout=POSITIVE_WAIT)


async def items(c, chan: str, node: str) -> dict:
    """Pubsub items of a channel node: id -> the payload element."""
    iq = c.make_iq_get(ito=chan)
    ps = ET.SubElement(iq.xml, f"{{{NS_PUBSUB}}}pubsub")
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}items", {"node": node})
    res = await iq.send(timeout=POSITIVE_WAIT)
    found = res.xml.findall(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items/{{{NS_PUBSUB}}}item")
    return {i.get("id"): (list(i) or [None])[0] for i in found}


async def participant_jids(c, chan: str) -> dict:
    """The participants node as a participant reads it: id -> (nick, <jid/> or None)."""
    got = await items(c, chan, PARTICIPANTS)
    return {pid: (p.findtext(f"{{{NS_CORE}}}nick"), p.findtext(f"{{{NS_CORE}}}jid"))
            for pid, p in got.items()}


async def jidmap(c, chan: str) -> dict:
    """XEP-0404 §3.2 jidmap node: participant id -> real bare JID."""
    return {pid: p.findtext(f"{{{NS_ANON}}}jid") for pid, p in (await items(c, chan, JIDMAP)).items()}


async def preferences(c, chan: str, fields: dict | None = None):
    """XEP-0404 §5 <user-preference/>: a get without fields, else a set with them. Returns the
    form of the result."""
    iq = c.make_iq_get(ito=chan) if fields is None else c.make_iq_set(ito=chan)
    up = ET.SubElement(iq.xml, f"{{{NS_ANON}}}user-preference")
    if fields is not None:
        up.append(data_form(NS_ANON, fields))
    res = await iq.send(timeout=POSITIVE_WAIT)
    return res.xml.find(f"{{{NS_ANON}}}user-preference/{{{NS_DATA}}}x")


async def join_with(c, chan: str, nick: str, nodes=(MESSAGES, PARTICIPANTS), prefs: dict | None = None,
                    ns: str = NS_CORE):
    """A join built by hand: with a preference form inside, and/or in another namespace (XEP-0404
    §5). Returns the <join/> of the result."""
    iq = c.make_iq_set(ito=chan)
    j = ET.SubElement(iq.xml, f"{{{ns}}}join")
    for n in nodes:
        ET.SubElement(j, f"{{{ns}}}subscribe", {"node": n})
    ET.SubElement(j, f"{{{ns}}}nick").text = nick
    if prefs is not None:
        j.append(data_form(NS_ANON, prefs))
    res = await iq.send(timeout=POSITIVE_WAIT)
    el = res.xml.find(f"{{{ns}}}join")
    assert el is not None, f"join result without <join xmlns='{ns}'/>: {res}"
    return el


async def archive(c, chan: str) -> list:
    """The channel's archive as `c` reads it (XEP-0313, latest page): the archived <message/>s."""
    qid = uuid.uuid4().hex[:10]
    iq = c.make_iq_set(ito=chan)
    ET.SubElement(iq.xml, f"{{{NS_MAM}}}query", {"queryid": qid})
    await iq.send(timeout=POSITIVE_WAIT)
    # The results come before the IQ result (XEP-0313 §4.2): all in the inbox by now.
    out = []
    for st in list(c.inbox):
        r = st.xml.find(f"{{{NS_MAM}}}result") if st.name == "message" else None
        if r is not None and r.get("queryid") == qid:
            c.inbox.remove(st)
            out.append(r.find(f"{{{NS_FORWARD}}}forwarded/{{jabber:client}}message"))
    return out


def encoded(pid: str, chan: str, resource: str | None = None) -> str:
    """XEP-0403 §3.1: a participant's JID in the channel."""
    return f"{pid}#{chan}" + (f"/{resource}" if resource else "")


def send_pm(c, to: str, body: str, mtype: str = "chat", extra=()) -> str:
    m = c.make_message(mto=to, mbody=body, mtype=mtype)
    m["id"] = uuid.uuid4().hex
    for el in extra:
        m.xml.append(el)
    m.send()
    return m["id"]


def pm(body: str | None = None):
    """A private message switched by a MIX channel."""
    def pred(s):
        return (s.name == "message" and s["type"] == "chat" and s["from"].domain == MIX
                and "#" in s["from"].user and (body is None or s["body"] == body))
    return pred


def message_error(mid: str):
    return lambda s: s.name == "message" and s["type"] == "error" and s["id"] == mid


async def refused(c, mid: str):
    """The error message answering message `mid`: (error type, condition, from)."""
    e = await wait_for(c, message_error(mid), what=f"error for message {mid}")
    return e["error"]["type"], e["error"]["condition"], str(e["from"])


async def iq_to(c, to: str, payload):
    """Sends an IQ get with `payload` to `to`; returns ('result', stanza) or ('error', stanza)."""
    iq = c.make_iq_get(ito=to)
    iq.xml.append(payload)
    sent_id = iq["id"]
    try:
        res = await iq.send(timeout=POSITIVE_WAIT)
        kind = "result"
    except IqError as e:
        res = e.iq
        kind = "error"
    assert res["id"] == sent_id
    return kind, res


def error_condition_of(iq):
    """(type, condition) of an IQ error."""
    return iq["error"]["type"], iq["error"]["condition"]


def relayed_iq(child_tag: str):
    """A request relayed by a channel to this client."""
    return lambda s: (s.name == "iq" and s["type"] in ("get", "set") and s["from"].domain == MIX
                      and s.xml.find(child_tag) is not None)


def channel_presence(pid: str, chan: str, available: bool = True):
    want = encoded(pid, chan).lower()

    def pred(s):
        return (s.name == "presence" and s["from"].bare.lower() == want
                and (s["type"] == "unavailable") != available)
    return pred


# ---------------------------------------------------------------------------------------------
# XEP-0404 §6: private messages


def test_private_message_reaches_the_bare_jid_and_is_not_archived(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice", "pm-desk")
        bob = await cl.login("bob")
        chan = await new_channel(alice, "pm-bare")
        a = await join(alice, chan, "alice")
        b = await join(bob, chan, "bob")
        send_groupchat(alice, chan, "in public")
        await wait_for(bob, groupchat(chan, "in public"), what="reflection")
        forged = [ET.Element(f"{{{NS_SID}}}stanza-id", {"id": "forged", "by": chan}),
                  ET.Element(f"{{{NS_CORE}}}mix")]
        ET.SubElement(forged[1], f"{{{NS_CORE}}}jid").text = "mallory@localhost"
        mid = send_pm(alice, encoded(b.id, chan), "just between us", extra=forged)
        got = await wait_for(bob, pm("just between us"), what="private message")
        archived = await archive(alice, chan)
        # The archive answer came after the PM was handled: a reflection would be here by now.
        reflected = [s for s in alice.inbox if s.name == "message" and s["body"] == "just between us"]
        return chan, a, b, mid, got, archived, reflected

    chan, a, b, mid, got, archived, reflected = scenario(server, body)
    assert str(got["from"]) == encoded(a.id, chan, "pm-desk")  # the sender's encoded JID + resource
    assert got["to"].bare == "bob@localhost"
    assert got["id"] == mid
    assert got.xml.find(f"{{{NS_CORE}}}mix") is None, got  # forged <mix/> stripped
    assert all(s.get("by") != chan for s in got.xml.findall(f"{{{NS_SID}}}stanza-id")), got
    assert "mallory" not in str(got)
    bodies = [m.findtext("{jabber:client}body") for m in archived]
    assert "in public" in bodies, bodies
    assert "just between us" not in bodies, bodies  # XEP-0404 §6: MUST NOT be archived
    assert not reflected, reflected


def test_private_message_to_a_resource(deployment):
    """Addressed to a full encoded JID, the message goes to that client only (the one behind the
    presence item); a resource that is not online is recipient-unavailable."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice", "pm-a")
        bob1 = await cl.login("bob", "pm-phone")
        bob2 = await cl.login("bob", "pm-laptop")
        chan = await new_channel(alice, "pm-full")
        a = await join(alice, chan, "alice", nodes=(MESSAGES, PRESENCE))
        b = await join(bob1, chan, "bob", nodes=(MESSAGES, PRESENCE))
        await join(bob2, chan, "bob", nodes=(MESSAGES, PRESENCE))
        bob1.send_presence(pto=chan)
        bob2.send_presence(pto=chan)
        for res in ("pm-phone", "pm-laptop"):
            await wait_for(alice, lambda s, res=res: channel_presence(b.id, chan)(s) and s["from"].resource == res,
                           what=f"bob's {res} presence")
        send_pm(alice, encoded(b.id, chan, "pm-phone"), "to the phone")
        send_pm(alice, encoded(b.id, chan, "pm-laptop"), "to the laptop")
        gone = send_pm(alice, encoded(b.id, chan, "pm-tablet"), "to the tablet")
        for res in ("pm-phone", "pm-laptop"):
            send_pm(alice, encoded(b.id, chan, res), "the end")
        phone = await wait_for(bob1, pm("to the phone"), what="message to the phone")
        laptop = await wait_for(bob2, pm("to the laptop"), what="message to the laptop")
        unavailable = await refused(alice, gone)
        # Each client got exactly the ones addressed to it: anything else would have come before
        # "the end".
        for c in (bob1, bob2):
            await wait_for(c, pm("the end"), what="the last message")
        extra = [str(s) for c in (bob1, bob2) for s in c.inbox if pm()(s)]
        return chan, a, phone, laptop, unavailable, extra

    chan, a, phone, laptop, unavailable, extra = scenario(server, body)
    assert str(phone["to"]) == "bob@localhost/pm-phone"
    assert str(laptop["to"]) == "bob@localhost/pm-laptop"
    assert str(phone["from"]) == encoded(a.id, chan, "pm-a")
    assert not extra, extra
    assert unavailable[:2] == ("wait", "recipient-unavailable")


def test_private_message_refusals(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        chan = await new_channel(alice, "pm-refused")
        await join(alice, chan, "alice")
        b = await join(bob, chan, "bob")
        to_bob = encoded(b.id, chan)
        got = {}
        got["non-participant"] = await refused(carol, send_pm(carol, to_bob, "from outside"))
        got["groupchat"] = await refused(alice, send_pm(alice, to_bob, "as groupchat", mtype="groupchat"))
        got["unknown id"] = await refused(alice, send_pm(alice, encoded("0123456789abcdef", chan), "to nobody"))
        await preferences(bob, chan, {"Private Messages": "block"})
        got["blocked"] = await refused(alice, send_pm(alice, to_bob, "while blocked"))
        await preferences(bob, chan, {"Private Messages": "allow"})
        await configure(alice, chan, {"Private Messages": "false"})
        got["channel"] = await refused(alice, send_pm(alice, to_bob, "channel says no"))
        await configure(alice, chan, {"Private Messages": "true"})
        send_pm(alice, to_bob, "allowed again")
        await wait_for(bob, pm("allowed again"), what="private message")
        leaked = [str(s) for s in bob.inbox if pm()(s)]
        return to_bob, got, leaked

    to_bob, got, leaked = scenario(server, body)
    assert got["non-participant"] == ("auth", "forbidden", to_bob)
    assert got["groupchat"] == ("modify", "bad-request", to_bob)
    assert got["unknown id"][:2] == ("cancel", "item-not-found")
    assert got["blocked"] == ("cancel", "not-allowed", to_bob)
    assert got["channel"] == ("cancel", "not-allowed", to_bob)
    assert not leaked, leaked  # none of the refused ones reached bob


# ---------------------------------------------------------------------------------------------
# XEP-0403 §3.6: IQ relay


def test_iq_relay_to_a_client(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice", "relay-a")
        bob = await cl.login("bob", "relay-b")
        carol = await cl.login("carol")
        chan = await new_channel(alice, "relay")
        a = await join(alice, chan, "alice")
        b = await join(bob, chan, "bob", nodes=(MESSAGES, PRESENCE))
        bob.send_presence(pto=chan)
        await wait_for(bob, channel_presence(b.id, chan), what="own channel presence")
        target = encoded(b.id, chan, "relay-b")
        ping = await iq_to(alice, target, ET.Element(f"{{{NS_PING}}}ping"))
        seen = await wait_for(bob, relayed_iq(f"{{{NS_PING}}}ping"), what="relayed ping")
        info = await iq_to(alice, target, ET.Element(f"{{{NS_DISCO_INFO}}}query"))
        # Something bob's client does not handle: its error comes back the same way.
        unknown = await iq_to(alice, target, ET.Element("{urn:example:nothing}query"))
        outsider = await iq_to(carol, target, ET.Element(f"{{{NS_PING}}}ping"))
        return a, target, ping, seen, info, unknown, outsider, chan

    a, target, ping, seen, info, unknown, outsider, chan = scenario(server, body)
    kind, res = ping
    assert kind == "result" and str(res["from"]) == target, res
    # What bob's client saw: the request from alice's encoded JID (her resource: a JID-visible
    # channel), to its real full JID, under an id of the channel's.
    assert str(seen["from"]) == encoded(a.id, chan, "relay-a")
    assert str(seen["to"]) == "bob@localhost/relay-b"
    assert seen["id"] != res["id"]
    kind, res = info
    assert kind == "result" and str(res["from"]) == target, res
    identities = res.xml.findall(f"{{{NS_DISCO_INFO}}}query/{{{NS_DISCO_INFO}}}identity")
    assert any(i.get("category") == "client" for i in identities), res  # answered by bob's client
    kind, res = unknown
    assert kind == "error" and str(res["from"]) == target, res
    assert res["error"]["condition"] == "feature-not-implemented", res  # slixmpp's own answer
    kind, res = outsider
    assert kind == "error" and error_condition_of(res) == ("auth", "forbidden"), res


def test_iq_relay_to_the_bare_jid_is_answered_by_the_server(deployment):
    """Addressed to the bare encoded JID, the request goes to the user's bare JID and the user's
    server answers for the account; its answer comes back from the JID asked."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob", "relay-bare")
        chan = await new_channel(alice, "relay-bare")
        await join(alice, chan, "alice")
        b = await join(bob, chan, "bob")
        target = encoded(b.id, chan)
        answer = await iq_to(alice, target, ET.Element(f"{{{NS_DISCO_INFO}}}query"))
        return target, answer, [str(s) for s in bob.inbox if relayed_iq(f"{{{NS_DISCO_INFO}}}query")(s)]

    target, (kind, res), at_client = scenario(server, body)
    assert str(res["from"]) == target, res
    assert not at_client, at_client  # the server answered for the account
    # Neither server shows an account's disco#info to a stranger; what each says comes back as
    # it was said.
    assert kind == "error", res
    assert error_condition_of(res) == {"prosody": ("cancel", "service-unavailable"),
                                       "ejabberd": ("auth", "subscription-required")}[server.kind], res


def test_iq_relay_answer_after_the_target_went_offline_in_the_channel(deployment):
    """The client that was asked answers after its presence left the channel: the answer still
    comes from the JID that was asked and must reach the requester (RFC 6120 §8.2.3: every
    request gets an answer)."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob", "slow")
        held = []
        bob.register_handler(Callback("slow", MatchXPath("{jabber:client}iq/{urn:example:slow}query"), held.append))
        chan = await new_channel(alice, "relay-late")
        await join(alice, chan, "alice")
        b = await join(bob, chan, "bob", nodes=(MESSAGES, PRESENCE))
        bob.send_presence(pto=chan)
        await wait_for(bob, channel_presence(b.id, chan), what="own channel presence")
        target = encoded(b.id, chan, "slow")
        asked = asyncio.ensure_future(iq_to(alice, target, ET.Element("{urn:example:slow}query")))
        await wait_for(bob, relayed_iq("{urn:example:slow}query"), what="relayed request")
        bob.send_presence(pto=chan, ptype="unavailable")
        await wait_for(bob, channel_presence(b.id, chan, available=False), what="own unavailable presence")
        held[0].reply().send()
        return target, await asked

    target, (kind, res) = scenario(server, body)
    assert kind == "result" and str(res["from"]) == target, res


def test_vcard_relay_needs_the_targets_consent(deployment):
    """XEP-0404 §5 'vCard' (default 'block'): until the target allows it, vCard requests through
    the channel (vcard-temp or vCard4) are refused by the channel and reach nobody. Allowed, a
    request to the bare encoded JID goes to the target's bare JID (XEP-0403 "Requesting a vCard
    through a Channel"), where the user's server answers for the account; neither test server
    keeps vCards, so that answer is its service-unavailable, relayed back from the JID asked."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob", "vcard")
        chan = await new_channel(alice, "relay-vcard")
        await join(alice, chan, "alice")
        b = await join(bob, chan, "bob", nodes=(MESSAGES, PRESENCE))
        bob.send_presence(pto=chan)
        await wait_for(bob, channel_presence(b.id, chan), what="own channel presence")
        refusals = [await iq_to(alice, encoded(b.id, chan, "vcard"), ET.Element(f"{{{NS_VCARD}}}vCard")),
                    await iq_to(alice, encoded(b.id, chan), ET.Element(f"{{{NS_VCARD}}}vCard")),
                    await iq_to(alice, encoded(b.id, chan), ET.Element(f"{{{NS_VCARD4}}}vcard"))]
        prefs = await preferences(bob, chan, {"vCard": "allow"})
        allowed = await iq_to(alice, encoded(b.id, chan), ET.Element(f"{{{NS_VCARD}}}vCard"))
        await iq_to(alice, encoded(b.id, chan, "vcard"), ET.Element(f"{{{NS_PING}}}ping"))  # in order after
        asked = [str(s) for s in bob.inbox if relayed_iq(f"{{{NS_VCARD}}}vCard")(s)
                 or relayed_iq(f"{{{NS_VCARD4}}}vcard")(s)]
        return encoded(b.id, chan), refusals, prefs, allowed, asked

    target, refusals, prefs, allowed, asked = scenario(server, body)
    for kind, res in refusals:
        assert kind == "error" and error_condition_of(res) == ("auth", "forbidden"), res
        assert res["error"]["text"] == "the participant does not share a vCard through the channel"
    assert form_values(prefs)["vCard"] == "allow"
    kind, res = allowed
    assert str(res["from"]) == target, res
    assert kind == "error" and error_condition_of(res) == ("cancel", "service-unavailable"), res
    assert not asked, asked  # the refused requests reached nobody; the allowed one the server


# ---------------------------------------------------------------------------------------------
# XEP-0404 §5: preferences


def test_user_preferences_get_and_set(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        chan = await new_channel(alice, "prefs")
        await join(alice, chan, "alice")
        template = await preferences(alice, chan)
        set1 = await preferences(alice, chan, {"Private Messages": "block", "vCard": "allow"})
        set2 = await preferences(alice, chan, {"Private Messages": "allow"})
        now = await preferences(alice, chan)
        errors = []
        for bad in ({"Favourite Colour": "green"}, {"Presence": "sometimes"}):
            try:
                await preferences(alice, chan, bad)
                errors.append(None)
            except IqError as e:
                errors.append(error_condition(e))
        after_errors = await preferences(alice, chan)
        return template, set1, set2, now, errors, after_errors

    template, set1, set2, now, errors, after_errors = scenario(server, body)
    assert template.get("type") == "form" and form_type(template) == NS_ANON
    assert form_values(template) == DEFAULTS
    options = {f.get("var"): [o.findtext(f"{{{NS_DATA}}}value") for o in f.findall(f"{{{NS_DATA}}}option")]
               for f in template.findall(f"{{{NS_DATA}}}field")}
    assert options["JID Visibility"] == ["default", "never", "always", "prefer not"]
    assert options["Private Messages"] == ["allow", "block"]
    assert options["vCard"] == ["allow", "block"]
    assert options["Presence"] == ["share", "not share"]
    # A set answers with every preference, not just the ones set (§5).
    assert set1.get("type") == "result" and form_type(set1) == NS_ANON
    assert form_values(set1) == {**DEFAULTS, "Private Messages": "block", "vCard": "allow"}
    assert form_values(set2) == {**DEFAULTS, "vCard": "allow"}  # the rest is kept
    assert form_values(now) == {**DEFAULTS, "vCard": "allow"}
    assert errors == [("modify", "not-acceptable")] * 2
    assert form_values(after_errors) == form_values(now)


def test_join_with_preferences(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        chan = await new_channel(alice, "join-prefs")
        plain = await join_with(alice, chan, "alice")
        with_form = await join_with(bob, chan, "bob", prefs={"vCard": "allow", "JID Visibility": "prefer not"})
        anon = await join_with(carol, chan, "carol", ns=NS_ANON)
        bob_now = await preferences(bob, chan)
        try:
            await join_with(carol, chan, "carol", prefs={"JID Visibility": "never"})
            never = None
        except IqError as e:
            never = error_condition(e)
        carol_now = await preferences(carol, chan)
        parts = await participant_jids(alice, chan)
        return plain, with_form, anon, bob_now, never, carol_now, parts

    plain, with_form, anon, bob_now, never, carol_now, parts = scenario(server, body)
    assert plain.find(f"{{{NS_DATA}}}x") is None  # not asked about preferences
    x = with_form.find(f"{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "result" and form_type(x) == NS_ANON
    assert form_values(x) == {**DEFAULTS, "vCard": "allow", "JID Visibility": "prefer not"}
    assert form_values(bob_now) == form_values(x)
    # <join xmlns='urn:xmpp:mix:anon:0'>: answered in that namespace, with all preferences.
    assert anon.get("id") and anon.findtext(f"{{{NS_ANON}}}nick") == "carol"
    assert form_values(anon.find(f"{{{NS_DATA}}}x")) == DEFAULTS
    # A JID-visible channel cannot honour 'never': refused, and carol is left as she was.
    assert never == ("modify", "not-acceptable")
    assert form_values(carol_now) == DEFAULTS
    assert sorted(n for n, _ in parts.values()) == ["alice", "bob", "carol"]
    assert {j for _, j in parts.values()} == {"alice@localhost", "bob@localhost", "carol@localhost"}


# ---------------------------------------------------------------------------------------------
# JID-hidden channels (XEP-0404 §3, §4)


def test_jid_hidden_channel(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice", "hid-a")
        bob = await cl.login("bob", "hid-b")
        carol = await cl.login("carol", "hid-c")
        chan = await new_channel(alice, "hidden", hidden=True)
        r = {}
        try:
            await join_with(carol, chan, "carol", prefs={"JID Visibility": "always"})
        except IqError as e:
            r["always"] = error_condition(e)
        a = await join(alice, chan, "alice", nodes=(MESSAGES, PARTICIPANTS, PRESENCE))
        b = await join(bob, chan, "bob", nodes=(MESSAGES, PARTICIPANTS, PRESENCE))
        alice.send_presence(pto=chan, pstatus="here")
        bob.send_presence(pto=chan)
        r["a_pres"] = await wait_for(bob, channel_presence(a.id, chan), what="alice's channel presence")
        r["b_pres"] = await wait_for(alice, channel_presence(b.id, chan), what="bob's channel presence")
        a_alias, b_alias = r["a_pres"]["from"].resource, r["b_pres"]["from"].resource
        # The stand-in is fixed while the client is online.
        alice.send_presence(pto=chan, pstatus="still here")
        r["a_pres2"] = await wait_for(bob, lambda s: channel_presence(a.id, chan)(s) and s["status"] == "still here",
                                      what="alice's second presence")
        # carol joins with the default preference: fine; bob sees her item, without her JID.
        c = await join(carol, chan, "carol", nodes=(MESSAGES,))
        r["c_item"] = event_item(await wait_for(bob, participants_event(chan, "item", c.id),
                                                what="carol's participants item"))
        send_groupchat(alice, chan, "who am I?")
        r["reflection"] = Reflection(await wait_for(bob, groupchat(chan, "who am I?"), what="reflection"))
        # Private messages: from the stand-in resource; without channel presence, from the
        # bare encoded JID.
        send_pm(alice, encoded(b.id, chan), "hidden hello")
        r["pm_a"] = await wait_for(bob, pm("hidden hello"), what="private message from alice")
        send_pm(carol, encoded(b.id, chan), "carol here")
        r["pm_c"] = await wait_for(bob, pm("carol here"), what="private message from carol")
        # IQ relay to the stand-in; the real resource is no address in the channel.
        r["ping"] = await iq_to(alice, encoded(b.id, chan, b_alias), ET.Element(f"{{{NS_PING}}}ping"))
        r["seen"] = await wait_for(bob, relayed_iq(f"{{{NS_PING}}}ping"), what="relayed ping")
        r["real_res"] = await iq_to(alice, encoded(b.id, chan, "hid-b"), ET.Element(f"{{{NS_PING}}}ping"))
        r["parts"] = await participant_jids(bob, chan)
        try:
            await items(bob, chan, JIDMAP)
            r["bob_jidmap"] = None
        except IqError as e:
            r["bob_jidmap"] = error_condition(e)
        r["owner_jidmap"] = await jidmap(alice, chan)
        await configure(alice, chan, {"Administrator": "bob@localhost"})
        r["admin_jidmap"] = set(await items(bob, chan, JIDMAP))
        r["archive"] = await archive(bob, chan)
        # Leaving takes the jidmap item with it.
        await carol.plugin["xep_0369"].leave_channel(JID(chan), timeout=POSITIVE_WAIT)
        r["jidmap_after_leave"] = set(await items(alice, chan, JIDMAP))
        return chan, a, b, c, a_alias, b_alias, r

    chan, a, b, c, a_alias, b_alias, r = scenario(server, body)
    assert r["always"] == ("modify", "not-acceptable")
    # Presence: stand-in resources, no real JID.
    assert a_alias and a_alias != "hid-a" and b_alias and b_alias != "hid-b"
    assert r["a_pres"].xml.find(f"{{{NS_PRESENCE}}}mix/{{{NS_PRESENCE}}}jid") is None, r["a_pres"]
    assert r["a_pres"].xml.findtext(f"{{{NS_PRESENCE}}}mix/{{{NS_PRESENCE}}}nick") == "alice"
    assert r["a_pres2"]["from"].resource == a_alias
    assert "hid-a" not in str(r["a_pres"]) + str(r["a_pres2"])
    assert r["c_item"].find(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}jid") is None, r["c_item"]
    assert r["c_item"].findtext(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") == "carol"
    assert r["reflection"].nick == "alice" and r["reflection"].jid is None
    assert str(r["pm_a"]["from"]) == encoded(a.id, chan, a_alias)
    assert str(r["pm_c"]["from"]) == encoded(c.id, chan)
    kind, res = r["ping"]
    assert kind == "result" and str(res["from"]) == encoded(b.id, chan, b_alias), res
    assert str(r["seen"]["from"]) == encoded(a.id, chan, a_alias)
    assert str(r["seen"]["to"]) == "bob@localhost/hid-b"
    kind, res = r["real_res"]
    assert kind == "error" and error_condition_of(res) == ("wait", "recipient-unavailable"), res
    # The participants node: nicks, no JIDs; the jidmap: for owners and administrators only.
    assert r["parts"] == {a.id: ("alice", None), b.id: ("bob", None), c.id: ("carol", None)}
    assert r["bob_jidmap"] == ("cancel", "not-allowed"), r["bob_jidmap"]  # XEP-0060 §6.5.9.x
    assert r["owner_jidmap"] == {a.id: "alice@localhost", b.id: "bob@localhost", c.id: "carol@localhost"}
    assert r["admin_jidmap"] == {a.id, b.id, c.id}  # once bob is an administrator
    archived = [m for m in r["archive"] if m.findtext("{jabber:client}body") == "who am I?"]
    assert len(archived) == 1
    assert archived[0].find(f"{{{NS_CORE}}}mix/{{{NS_CORE}}}jid") is None, ET.tostring(archived[0])
    assert r["jidmap_after_leave"] == {a.id, b.id}


def test_switching_a_channel_to_jid_hidden(deployment):
    """The owner makes a live JID-visible channel JID-hidden: every participant item is
    republished without its JID and the jidmap filled; a participant whose preference is
    'always' is removed; online clients go offline under their real resource and come back under
    a stand-in; the archive stops showing JIDs, also of messages from before the switch. Back to
    JID-visible, a participant whose preference is 'never' is removed (XEP-0404 §5)."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice", "sw-a")
        bob = await cl.login("bob", "sw-b")
        carol = await cl.login("carol", "sw-c")
        chan = await new_channel(alice, "switch")
        a = await join(alice, chan, "alice", nodes=(MESSAGES, PRESENCE))
        b = await join(bob, chan, "bob", nodes=(MESSAGES, PARTICIPANTS, PRESENCE))
        c = Joined(await join_with(carol, chan, "carol", nodes=(MESSAGES, PRESENCE),
                                    prefs={"JID Visibility": "always"}))
        for x in (alice, bob, carol):
            x.send_presence(pto=chan)
        for x in (a, c):
            await wait_for(bob, channel_presence(x.id, chan), what="presence before the switch")
        send_groupchat(bob, chan, "said in the open")
        before = Reflection(await wait_for(bob, groupchat(chan, "said in the open"), what="reflection"))
        bob.inbox.clear()
        await configure(alice, chan, {"JID Visibility": "jid-hidden"})
        r = {"before": before}
        r["a_item"] = event_item(await wait_for(bob, participants_event(chan, "item", a.id),
                                                what="alice's item republished"))
        r["b_item"] = event_item(await wait_for(bob, participants_event(chan, "item", b.id),
                                                what="bob's item republished"))
        r["c_gone"] = await wait_for(bob, participants_event(chan, "retract", c.id), what="carol's retraction")
        r["a_off"] = await wait_for(bob, lambda s: channel_presence(a.id, chan, available=False)(s)
                                    and s["from"].resource == "sw-a", what="alice offline under her resource")
        r["c_off"] = await wait_for(bob, lambda s: channel_presence(c.id, chan, available=False)(s)
                                    and s["from"].resource == "sw-c", what="carol offline")
        r["a_on"] = await wait_for(bob, channel_presence(a.id, chan), what="alice back under a stand-in")
        r["parts"] = await participant_jids(bob, chan)
        r["owner_jidmap"] = await jidmap(alice, chan)
        mid = send_pm(carol, encoded(a.id, chan), "am I still in?")
        r["carol_pm"] = await refused(carol, mid)
        send_groupchat(alice, chan, "said in the dark")
        r["after"] = Reflection(await wait_for(bob, groupchat(chan, "said in the dark"), what="reflection"))
        r["archive"] = await archive(bob, chan)
        # The presence that came back is the only one: carol did not come back.
        r["c_back"] = [str(s) for s in bob.inbox if channel_presence(c.id, chan)(s)]
        # The real resource is no address in a JID-hidden channel any more.
        r["old_address"] = await refused(alice, send_pm(alice, encoded(b.id, chan, "sw-b"), "still there?"))
        # And back to JID-visible: bob, who now wants 'never', has to go; alice's JID is back.
        await preferences(bob, chan, {"JID Visibility": "never"})
        alice.inbox.clear()
        await configure(alice, chan, {"JID Visibility": "jid-mandatory-visible"})
        r["a_real"] = await wait_for(alice, lambda s: channel_presence(a.id, chan)(s) and s["from"].resource == "sw-a",
                                     what="alice back under her own resource")
        r["visible_parts"] = await participant_jids(alice, chan)
        r["bob_out"] = await refused(bob, send_pm(bob, chan, "and me?", mtype="groupchat"))
        return chan, a, b, c, r

    chan, a, b, c, r = scenario(server, body)
    assert r["before"].jid == "bob@localhost"  # shown while the channel was JID-visible
    for item in (r["a_item"], r["b_item"]):
        assert item.find(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}jid") is None, ET.tostring(item)
    assert r["a_item"].findtext(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") == "alice"
    assert event_item(r["c_gone"], "retract").get("id") == c.id
    stand_in = r["a_on"]["from"].resource
    assert stand_in and stand_in != "sw-a"
    assert r["a_on"].xml.find(f"{{{NS_PRESENCE}}}mix/{{{NS_PRESENCE}}}jid") is None, r["a_on"]
    assert r["a_on"].xml.findtext(f"{{{NS_PRESENCE}}}mix/{{{NS_PRESENCE}}}nick") == "alice"
    assert not r["c_back"], r["c_back"]
    assert r["parts"] == {a.id: ("alice", None), b.id: ("bob", None)}
    assert r["owner_jidmap"] == {a.id: "alice@localhost", b.id: "bob@localhost"}
    assert r["carol_pm"][:2] == ("auth", "forbidden")  # carol is no participant any more
    assert r["after"].jid is None and r["after"].nick == "alice"
    archived = {m.findtext("{jabber:client}body"): m for m in r["archive"]}
    assert set(archived) >= {"said in the open", "said in the dark"}, list(archived)
    for m in archived.values():
        mix = m.find(f"{{{NS_CORE}}}mix")
        assert mix is not None and mix.find(f"{{{NS_CORE}}}jid") is None, ET.tostring(m)
    assert archived["said in the open"].findtext(f"{{{NS_CORE}}}mix/{{{NS_CORE}}}nick") == "bob"
    assert r["old_address"][:2] == ("wait", "recipient-unavailable")
    assert r["a_real"].xml.findtext(f"{{{NS_PRESENCE}}}mix/{{{NS_PRESENCE}}}jid") == "alice@localhost/sw-a"
    assert r["visible_parts"] == {a.id: ("alice", "alice@localhost")}
    assert r["bob_out"][:2] == ("auth", "forbidden")

