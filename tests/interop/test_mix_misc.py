"""MIX-MISC (XEP-0407) and the other channel extras through a real server, with slixmpp clients:
invitations (§4), retraction in the MIX, XEP-0424 and XEP-0425 forms with tombstones in the
channel archive, nick registration (§5) reaching every channel, editable config/info forms
(XEP-0406 ADM-07), the avatar nodes (§7) and 'End of Life' (XEP-0406 §3.6).

What a user would check: the stanzas received, the archive read back with a MAM query to the
channel, errors by type and condition. The invitation tokens and archive ids are random, which is
why these are not scansion scripts (the deterministic refusals are in
tests/scripts/mix_misc_bad_input.scs).

Every test uses its own channel (created by alice over XMPP, so alice is its owner). Nick
registration is service-wide and stays for the whole deployment, so that test runs last.
"""
import asyncio
import copy
import time
import uuid
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from conftest import MIX
from test_mix import (MESSAGES, NS_CORE, NS_SID, PARTICIPANTS, POSITIVE_WAIT, Joined,
                      Reflection, error_condition, event_item, groupchat, join, participants_event,
                      scenario, send_groupchat, wait_for)

NS_MISC = "urn:xmpp:mix:misc:0"
NS_ADMIN = "urn:xmpp:mix:admin:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_CLIENT = "jabber:client"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_RETRACT0 = "urn:xmpp:message-retract:0"
NS_FASTEN = "urn:xmpp:fasten:0"
NS_FALLBACK = "urn:xmpp:fallback:0"
NS_MODERATE = "urn:xmpp:message-moderate:1"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
INFO = "urn:xmpp:mix:nodes:info"
CONFIG = "urn:xmpp:mix:nodes:config"
ALLOWED = "urn:xmpp:mix:nodes:allowed"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_METADATA = "urn:xmpp:avatar:metadata"
# mixd's default 'Nodes Present' less 'avatar' (XEP-0406 §3.6 lists it among the defaults).
DEFAULT_NODES = ("participants", "presence", "information", "banned", "jidmap-visible")


# ---------------------------------------------------------------------------------------------
# Helpers


async def create(c, name: str) -> str:
    """XEP-0369 §7.3.2 over XMPP: c becomes the channel's owner."""
    created = await c.plugin["xep_0369"].create_channel(JID(MIX), name, timeout=POSITIVE_WAIT)
    assert created == name
    return f"{name}@{MIX}"


async def raw_iq(c, to: str, payload: str | ET.Element, type_: str = "set"):
    """Sends an IQ with a payload given as XML text (or an element); returns the result, raises
    IqError on an error."""
    iq = c.make_iq_set(ito=to) if type_ == "set" else c.make_iq_get(ito=to)
    iq.append(ET.fromstring(payload) if isinstance(payload, str) else payload)
    return await iq.send(timeout=POSITIVE_WAIT)


async def iq_error(c, to: str, payload: str | ET.Element, type_: str = "set"):
    """(type, condition) of the error the IQ gets; fails if it succeeds."""
    try:
        res = await raw_iq(c, to, payload, type_)
    except IqError as e:
        return error_condition(e)
    raise AssertionError(f"expected an error, got {res}")


def form(fields: dict) -> str:
    """An XEP-0406 config submission: {var: value or list of values}."""
    out = [f"<x xmlns='{NS_DATA}' type='submit'>",
           f"<field var='FORM_TYPE' type='hidden'><value>{NS_ADMIN}</value></field>"]
    for var, values in fields.items():
        values = [values] if isinstance(values, str) else values
        vals = "".join(f"<value>{escape(v)}</value>" for v in values)
        out.append(f"<field var='{escape(var)}'>{vals}</field>")
    out.append("</x>")
    return "".join(out)


async def configure(c, chan: str, fields: dict):
    await raw_iq(c, chan, f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{CONFIG}'><item>{form(fields)}"
                          f"</item></publish></pubsub>")


async def configure_error(c, chan: str, fields: dict):
    return await iq_error(c, chan, f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{CONFIG}'><item>"
                                   f"{form(fields)}</item></publish></pubsub>")


def items_request(node: str) -> str:
    return f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub>"


async def items(c, chan: str, node: str) -> list:
    """The <item/> elements of a node of the channel (pubsub items get)."""
    res = await raw_iq(c, chan, items_request(node), "get")
    return res.xml.findall(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items/{{{NS_PUBSUB}}}item")


def form_of(item) -> ET.Element:
    x = item.find(f"{{{NS_DATA}}}x")
    assert x is not None, ET.tostring(item)
    return x


def field_values(x: ET.Element, var: str) -> list:
    for f in x.findall(f"{{{NS_DATA}}}field"):
        if f.get("var") == var:
            return [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
    return []


async def invite(c, chan: str, invitee: str) -> ET.Element:
    """XEP-0407 §4: asks the channel for an invitation; returns the <invitation/>."""
    res = await raw_iq(c, chan, f"<invite xmlns='{NS_MISC}'><invitee>{invitee}</invitee></invite>", "get")
    inv = res.xml.find(f"{{{NS_MISC}}}invite/{{{NS_MISC}}}invitation")
    assert inv is not None, f"invite result without <invitation/>: {res}"
    return inv


def invitation_fields(inv: ET.Element) -> dict:
    return {n: inv.findtext(f"{{{NS_MISC}}}{n}") for n in ("inviter", "invitee", "channel", "token")}


def join_payload(nick: str, invitation: ET.Element | None, ns: str = NS_CORE,
                 nodes=(MESSAGES, PARTICIPANTS)) -> ET.Element:
    """<join/> as a client builds it, with the invitation it was given copied in (XEP-0407 §4)."""
    j = ET.Element(f"{{{ns}}}join")
    for n in nodes:
        ET.SubElement(j, f"{{{ns}}}subscribe", {"node": n})
    ET.SubElement(j, f"{{{ns}}}nick").text = nick
    if invitation is not None:
        j.append(copy.deepcopy(invitation))
    return j


async def join_invited(c, chan: str, nick: str, invitation: ET.Element | None, ns: str = NS_CORE):
    res = await raw_iq(c, chan, join_payload(nick, invitation, ns))
    el = res.xml.find(f"{{{ns}}}join")
    assert el is not None, f"join result without <join xmlns='{ns}'/>: {res}"
    return el


async def join_refused(c, chan: str, nick: str, invitation: ET.Element | None):
    return await iq_error(c, chan, join_payload(nick, invitation))


def message(c, chan: str, *children: str, body: str | None = None) -> str:
    """Sends a groupchat message with the given payloads (XML text); returns its id."""
    mid = uuid.uuid4().hex
    m = c.make_message(mto=chan, mtype="groupchat", mbody=body)
    m["id"] = mid
    for ch in children:
        m.append(ET.fromstring(ch))
    m.send()
    return mid


def error_reply(chan: str, mid: str):
    def pred(s):
        return s.name == "message" and s["type"] == "error" and s["id"] == mid and s["from"].bare == chan
    return pred


async def message_error(c, chan: str, mid: str):
    """(type, condition) of the error message answering message `mid`."""
    err = await wait_for(c, error_reply(chan, mid), what=f"error message for {mid}")
    return err["error"]["type"], err["error"]["condition"]


def retraction_of(chan: str, sid: str):
    """A groupchat message from the channel retracting `sid` (XEP-0424 form)."""
    def pred(s):
        if s.name != "message" or s["type"] != "groupchat" or s["from"].bare != chan:
            return False
        r = s.xml.find(f"{{{NS_RETRACT}}}retract")
        return r is not None and r.get("id") == sid
    return pred


def any_retraction(chan: str):
    def pred(s):
        return (s.name == "message" and s["from"].bare == chan
                and (s.xml.find(f"{{{NS_RETRACT}}}retract") is not None
                     or s.xml.find(f"{{{NS_MISC}}}retract") is not None))
    return pred


async def no_retraction_before(c, chan: str, marker: str):
    """Sends nothing itself: waits for the reflection of `marker` (sent after the refused
    requests) and checks that no retraction reached c before it. The channel handles one
    channel's stanzas in order, so anything it had sent for the earlier requests is here."""
    await wait_for(c, groupchat(chan, marker), what=f"reflection of {marker!r}")
    bad = [str(s) for s in c.inbox if any_retraction(chan)(s)]
    assert not bad, f"{c.boundjid.full}: unexpected retraction: {bad}"


async def mam(c, chan: str) -> dict:
    """The channel's archive as c reads it (XEP-0313): {archive id: forwarded <message/>}, in
    archive order (dicts keep insertion order)."""
    qid = uuid.uuid4().hex
    await raw_iq(c, chan, f"<query xmlns='{NS_MAM}' queryid='{qid}'/>")
    out = {}
    rest = []
    for s in c.inbox:
        r = s.xml.find(f"{{{NS_MAM}}}result") if s.name == "message" else None
        if r is not None and r.get("queryid") == qid:
            m = r.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
            assert m is not None, f"MAM result without a forwarded message: {s}"
            out[r.get("id")] = m
        else:
            rest.append(s)
    c.inbox[:] = rest
    return out


def parse_stamp(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def assert_recent(stamp: str | None, what: str):
    assert stamp, f"{what}: no time"
    age = (datetime.now(timezone.utc) - parse_stamp(stamp)).total_seconds()
    assert -60 < age < 120, f"{what}: {stamp} is not now"


def assert_tombstone(m: ET.Element, retraction_id: str, by: str):
    """XEP-0424 §5 + XEP-0407 §6: no body, both forms of <retracted/>."""
    assert m.find(f"{{{NS_CLIENT}}}body") is None, f"tombstone keeps the body: {ET.tostring(m)}"
    r1 = m.find(f"{{{NS_RETRACT}}}retracted")
    assert r1 is not None, f"tombstone without <retracted xmlns='{NS_RETRACT}'/>: {ET.tostring(m)}"
    assert r1.get("id") == retraction_id, ET.tostring(m)
    assert_recent(r1.get("stamp"), "retracted stamp")
    r0 = m.find(f"{{{NS_MISC}}}retracted")
    assert r0 is not None, f"tombstone without <retracted xmlns='{NS_MISC}'/>: {ET.tostring(m)}"
    assert r0.get("by") == by, ET.tostring(m)
    assert_recent(r0.get("time"), "retracted time")


class Retraction:
    """A retraction as the channel distributes it (non-moderation forms)."""

    def __init__(self, msg):
        self.msg = msg
        self.from_ = msg["from"]
        self.id = msg["id"]
        r1 = msg.xml.find(f"{{{NS_RETRACT}}}retract")
        r0 = msg.xml.find(f"{{{NS_MISC}}}retract")
        self.retract_id = r1.get("id") if r1 is not None else None
        self.mix_retract_id = r0.get("id") if r0 is not None else None
        mix = msg.xml.find(f"{{{NS_CORE}}}mix")
        self.nick = mix.findtext(f"{{{NS_CORE}}}nick") if mix is not None else None
        sid = msg.xml.find(f"{{{NS_SID}}}stanza-id")
        self.stanza_id = sid.get("id") if sid is not None else None
        self.stanza_id_by = sid.get("by") if sid is not None else None


# ---------------------------------------------------------------------------------------------
# XEP-0407 §4: invitations


def test_invitation_admits_invitee_to_a_closed_channel(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        chan = await create(alice, "invite-closed")
        await join(alice, chan, "alice")
        # An allowed node that lists nobody: only owners and admins may join now.
        await configure(alice, chan, {"Nodes Present": [*DEFAULT_NODES, "allowed"]})
        r = {"plain_join": await join_refused(carol, chan, "carol", None),
             "stranger_invites": await iq_error(
                 bob, chan, f"<invite xmlns='{NS_MISC}'><invitee>carol@localhost</invitee></invite>", "get")}
        inv = await invite(alice, chan, "carol@localhost")
        # The invitation is carol's: bob cannot use it.
        r["bob_with_carols"] = await join_refused(bob, chan, "bob", inv)
        joined = Joined(await join_invited(carol, chan, "carol", inv))
        note = await wait_for(alice, participants_event(chan, "item", joined.id),
                              what="participants item for carol")
        r["allowed"] = [i.get("id") for i in await items(alice, chan, ALLOWED)]
        # Single use: the same invitation again is refused, even though carol is now allowed.
        await carol.plugin["xep_0369"].leave_channel(JID(chan), timeout=POSITIVE_WAIT)
        r["reuse"] = await join_refused(carol, chan, "carol", inv)
        # Listed in the allowed node, she needs no invitation any more.
        again = await join(carol, chan, "carol")
        # The XEP-0407 example's form: <join xmlns='urn:xmpp:mix:misc:0'> with the invitation.
        inv_bob = await invite(alice, chan, "bob@localhost")
        misc_join = await join_invited(bob, chan, "bob", inv_bob, ns=NS_MISC)
        r["allowed_after"] = sorted(i.get("id") for i in await items(alice, chan, ALLOWED))
        return chan, r, inv, inv_bob, joined, note, again, misc_join

    chan, r, inv, inv_bob, joined, note, again, misc_join = scenario(server, body)
    assert r["plain_join"] == ("auth", "forbidden")
    assert r["stranger_invites"] == ("auth", "forbidden")
    f = invitation_fields(inv)
    assert f["inviter"] == "alice@localhost"
    assert f["invitee"] == "carol@localhost"
    assert f["channel"] == chan
    assert f["token"] and len(f["token"]) >= 16, f  # unguessable
    assert invitation_fields(inv_bob)["token"] != f["token"]
    assert r["bob_with_carols"] == ("auth", "forbidden")
    assert joined.nick == "carol" and joined.id
    assert event_item(note).findtext(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") == "carol"
    # §4: "the channel MUST add the invitee to the allowed node as part of the join".
    assert r["allowed"] == ["carol@localhost"], r["allowed"]
    assert r["reuse"] == ("auth", "forbidden")
    assert again.id == joined.id  # the same participant id on rejoining
    assert misc_join.get("id") and misc_join.get("jid") == f"{misc_join.get('id')}#{chan}"
    assert misc_join.findtext(f"{{{NS_MISC}}}nick") == "bob"
    assert r["allowed_after"] == ["bob@localhost", "carol@localhost"]


def test_participants_invite_when_the_channel_allows_it(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        chan = await create(alice, "invite-participants")
        await join(alice, chan, "alice")
        await join(bob, chan, "bob")
        await configure(alice, chan, {"Nodes Present": [*DEFAULT_NODES, "allowed"]})
        req = f"<invite xmlns='{NS_MISC}'><invitee>carol@localhost</invitee></invite>"
        r = {"off": await iq_error(bob, chan, req, "get")}
        await configure(alice, chan, {"Participation Addition by Invitation from Participant": "true"})
        # The invitee as a user might type it: the channel issues it for the normalised JID.
        inv = await invite(bob, chan, "Carol@LocalHost")
        joined = Joined(await join_invited(carol, chan, "carol", inv))
        r["missing"] = await iq_error(bob, chan, f"<invite xmlns='{NS_MISC}'/>", "get")
        r["malformed"] = await iq_error(
            bob, chan, f"<invite xmlns='{NS_MISC}'><invitee>@localhost</invitee></invite>", "get")
        await raw_iq(alice, chan, f"<pubsub xmlns='{NS_PUBSUB}'><publish node='urn:xmpp:mix:nodes:banned'>"
                                  f"<item id='mallory@localhost'/></publish></pubsub>")
        r["banned"] = await iq_error(
            bob, chan, f"<invite xmlns='{NS_MISC}'><invitee>mallory@localhost</invitee></invite>", "get")
        return r, inv, joined

    r, inv, joined = scenario(server, body)
    assert r["off"] == ("auth", "forbidden")
    assert invitation_fields(inv)["inviter"] == "bob@localhost"
    assert invitation_fields(inv)["invitee"] == "carol@localhost"
    assert joined.nick == "carol"
    assert r["missing"] == ("modify", "bad-request")
    assert r["malformed"] == ("modify", "jid-malformed")
    assert r["banned"] == ("auth", "forbidden")


# ---------------------------------------------------------------------------------------------
# Retraction: XEP-0407 §6, XEP-0424, XEP-0425


def test_mix_retraction_of_own_message(deployment):
    """XEP-0407 §6: a body-less message with <retract xmlns='urn:xmpp:mix:misc:0' id='MAM-ID'/>,
    allowed for one's own messages only when 'User Message Retraction' is on."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        chan = await create(alice, "retract-own")
        await join(alice, chan, "alice")
        b = await join(bob, chan, "bob")
        send_groupchat(bob, chan, "oops")
        orig = Reflection(await wait_for(alice, groupchat(chan, "oops"), what="reflection"))
        await wait_for(bob, groupchat(chan, "oops"), what="own reflection")
        send_groupchat(alice, chan, "not yours")
        alices = Reflection(await wait_for(bob, groupchat(chan, "not yours"), what="reflection"))
        retract = f"<retract xmlns='{NS_MISC}' id='{orig.stanza_id}'/>"
        r = {"default_off": await message_error(bob, chan, message(bob, chan, retract))}
        await configure(alice, chan, {"User Message Retraction": "true"})
        r["with_body"] = await message_error(bob, chan, message(bob, chan, retract, body="gone"))
        r["unknown"] = await message_error(
            bob, chan, message(bob, chan, f"<retract xmlns='{NS_MISC}' id='{uuid.uuid4()}'/>"))
        r["others"] = await message_error(
            bob, chan, message(bob, chan, f"<retract xmlns='{NS_MISC}' id='{alices.stanza_id}'/>"))
        send_groupchat(bob, chan, "marker")
        for c in (alice, bob):
            await no_retraction_before(c, chan, "marker")
        req = message(bob, chan, retract)
        got = {c.boundjid.user: Retraction(await wait_for(c, retraction_of(chan, orig.stanza_id),
                                                          what="retraction"))
               for c in (alice, bob)}
        r["twice"] = await message_error(bob, chan, message(bob, chan, retract))
        archive = await mam(alice, chan)
        return b, orig, alices, r, req, got, archive

    b, orig, alices, r, req, got, archive = scenario(server, body)
    assert r["default_off"] == ("auth", "forbidden")
    assert r["with_body"] == ("modify", "bad-request")
    assert r["unknown"] == ("cancel", "item-not-found")
    assert r["others"] == ("auth", "forbidden")
    assert r["twice"] == ("cancel", "item-not-found")
    chan = f"retract-own@{MIX}"
    ids = set()
    for user, rt in got.items():
        assert rt.from_.bare == chan and rt.from_.resource == b.id, (user, rt.msg)
        assert rt.retract_id == orig.stanza_id and rt.mix_retract_id == orig.stanza_id, rt.msg
        assert rt.nick == "bob", rt.msg
        assert rt.msg["body"] == "", rt.msg
        assert rt.stanza_id and rt.stanza_id_by == chan and rt.id == rt.stanza_id, rt.msg
        assert rt.stanza_id != orig.stanza_id
        ids.add(rt.stanza_id)
    assert len(ids) == 1
    retraction_id = ids.pop()
    # The archive: the original is a tombstone, the retraction is stored after it, the other
    # messages are untouched.
    order = list(archive)
    assert orig.stanza_id in archive and retraction_id in archive, order
    assert order.index(orig.stanza_id) < order.index(retraction_id)
    assert_tombstone(archive[orig.stanza_id], retraction_id, "bob@localhost")
    tomb_sid = archive[orig.stanza_id].find(f"{{{NS_SID}}}stanza-id")
    assert tomb_sid is not None and tomb_sid.get("id") == orig.stanza_id  # still findable by id
    stored = archive[retraction_id]
    assert stored.find(f"{{{NS_MISC}}}retract").get("id") == orig.stanza_id
    assert stored.find(f"{{{NS_RETRACT}}}retract").get("id") == orig.stanza_id
    assert archive[alices.stanza_id].findtext(f"{{{NS_CLIENT}}}body") == "not yours"


def test_xep_0424_retractions_and_owner_retracting_others(deployment):
    """XEP-0424 v0.4 (<retract xmlns='urn:xmpp:message-retract:1'/> with a fallback body) and
    v0.3 (<apply-to xmlns='urn:xmpp:fasten:0'><retract xmlns='urn:xmpp:message-retract:0'/>)
    name the same archive row; an owner ('Administrator Message Retraction Rights' = owners by
    default) retracts anyone's message even with 'User Message Retraction' off."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        chan = await create(alice, "retract-forms")
        await join(alice, chan, "alice")
        b = await join(bob, chan, "bob")
        origs = []
        for text in ("first", "second", "third"):
            send_groupchat(bob, chan, text)
            origs.append(Reflection(await wait_for(alice, groupchat(chan, text), what="reflection")))
        # The owner retracts bob's first message (XEP-0424 v0.4 form, fallback body).
        message(alice, chan, f"<retract xmlns='{NS_RETRACT}' id='{origs[0].stanza_id}'/>",
                f"<fallback xmlns='{NS_FALLBACK}' for='{NS_RETRACT}'/>",
                body="/me retracted a previous message, but it's unsupported by your client.")
        r1 = Retraction(await wait_for(bob, retraction_of(chan, origs[0].stanza_id), what="retraction"))
        # With 'User Message Retraction' on, bob retracts his own second message with the v0.3
        # fastening form, and the third with the v0.4 form.
        await configure(alice, chan, {"User Message Retraction": "true"})
        message(bob, chan, f"<apply-to xmlns='{NS_FASTEN}' id='{origs[1].stanza_id}'>"
                           f"<retract xmlns='{NS_RETRACT0}'/></apply-to>")
        r2 = Retraction(await wait_for(alice, retraction_of(chan, origs[1].stanza_id), what="retraction"))
        message(bob, chan, f"<retract xmlns='{NS_RETRACT}' id='{origs[2].stanza_id}'/>")
        r3 = Retraction(await wait_for(alice, retraction_of(chan, origs[2].stanza_id), what="retraction"))
        archive = await mam(bob, chan)
        return b, origs, (r1, r2, r3), archive

    b, origs, (r1, r2, r3), archive = scenario(server, body)
    chan = f"retract-forms@{MIX}"
    # Bob's own retractions come from his channel address, like his messages. (Where the owner's
    # retraction of someone else's message comes from is left open here: XEP-0424 §6 clients
    # only accept a plain retraction from the original sender, so a moderation form suits it.)
    for rt in (r2, r3):
        assert rt.from_ == JID(f"{chan}/{b.id}"), rt.msg
    for rt, orig in ((r1, origs[0]), (r2, origs[1]), (r3, origs[2])):
        assert rt.from_.bare == chan, rt.msg
        assert rt.retract_id == orig.stanza_id and rt.mix_retract_id == orig.stanza_id, rt.msg
        assert rt.stanza_id and rt.id == rt.stanza_id, rt.msg
    applied = r2.msg.xml.find(f"{{{NS_FASTEN}}}apply-to")  # the v0.3 form, for v0.3 clients
    assert applied is not None and applied.get("id") == origs[1].stanza_id, r2.msg
    assert_tombstone(archive[origs[0].stanza_id], r1.stanza_id, "alice@localhost")
    assert_tombstone(archive[origs[1].stanza_id], r2.stanza_id, "bob@localhost")
    assert_tombstone(archive[origs[2].stanza_id], r3.stanza_id, "bob@localhost")
    for rt in (r1, r2, r3):  # XEP-0424 §5: the retraction MUST be stored
        assert rt.stanza_id in archive, list(archive)


def test_xep_0425_moderation(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        chan = await create(alice, "moderated")
        a = await join(alice, chan, "alice")
        await join(bob, chan, "bob")
        await join(carol, chan, "carol")
        send_groupchat(bob, chan, "DM me for free magic potions!")
        orig = Reflection(await wait_for(carol, groupchat(chan, "DM me for free magic potions!"),
                                         what="reflection"))

        def moderate(sid):
            return (f"<moderate xmlns='{NS_MODERATE}' id='{sid}'><retract xmlns='{NS_RETRACT}'/>"
                    f"<reason>Inappropriate</reason></moderate>")

        r = {"participant": await iq_error(carol, chan, moderate(orig.stanza_id))}
        res = await raw_iq(alice, chan, moderate(orig.stanza_id))
        # XEP-0425 §4.1: the broadcast, then the IQ result (the inbox is in arrival order).
        arrivals = [("result" if s.name == "iq" and s["id"] == res["id"] else
                     "broadcast" if retraction_of(chan, orig.stanza_id)(s) else None) for s in alice.inbox]
        ahead = [x for x in arrivals if x][:2] == ["broadcast", "result"]
        got = {c.boundjid.user: await wait_for(c, retraction_of(chan, orig.stanza_id), what="moderation")
               for c in (alice, bob, carol)}
        r["again"] = await iq_error(alice, chan, moderate(orig.stanza_id))
        archive = await mam(carol, chan)
        return a, orig, r, ahead, got, archive

    a, orig, r, ahead, got, archive = scenario(server, body)
    chan = f"moderated@{MIX}"
    assert r["participant"] == ("auth", "forbidden")
    assert r["again"] == ("cancel", "item-not-found")
    assert ahead, "the IQ result arrived before the moderation message"
    ids = set()
    for user, m in got.items():
        assert m["from"] == JID(chan), m  # from the channel itself (§4.1)
        retract = m.xml.find(f"{{{NS_RETRACT}}}retract")
        moderated = retract.find(f"{{{NS_MODERATE}}}moderated")
        assert moderated is not None, m
        assert moderated.get("by") == f"{chan}/{a.id}", m
        occ = moderated.find(f"{{{NS_OCCUPANT_ID}}}occupant-id")
        assert occ is not None and occ.get("id") == a.id, m
        assert retract.findtext(f"{{{NS_RETRACT}}}reason") == "Inappropriate", m
        assert m["body"] == "", m
        sid = m.xml.find(f"{{{NS_SID}}}stanza-id")
        assert sid is not None and sid.get("by") == chan, m
        ids.add(sid.get("id"))
    assert len(ids) == 1
    retraction_id = ids.pop()
    tomb = archive[orig.stanza_id]
    assert_tombstone(tomb, retraction_id, "alice@localhost")
    retracted = tomb.find(f"{{{NS_RETRACT}}}retracted")
    assert retracted.find(f"{{{NS_MODERATE}}}moderated") is not None, ET.tostring(tomb)
    assert retracted.findtext(f"{{{NS_RETRACT}}}reason") == "Inappropriate", ET.tostring(tomb)
    assert retraction_id in archive


# ---------------------------------------------------------------------------------------------
# XEP-0406: forms for editors, avatar nodes, End of Life


def test_config_and_info_items_are_forms_for_those_who_may_edit_them(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        chan = await create(alice, "forms")
        await join(alice, chan, "alice")
        await join(bob, chan, "bob")
        r = {"owner_config": await items(alice, chan, CONFIG),
             "participant_config": await iq_error(bob, chan, items_request(CONFIG), "get")}
        await configure(alice, chan, {"Configuration Node Access": "participants"})
        r["participant_config_open"] = await items(bob, chan, CONFIG)
        r["owner_info"] = await items(alice, chan, INFO)
        r["participant_info"] = await items(bob, chan, INFO)
        return r

    r = scenario(server, body)
    owner = form_of(r["owner_config"][-1])
    assert owner.get("type") == "form"  # ADM-07: the owner gets a form to edit
    assert field_values(owner, "FORM_TYPE") == [NS_ADMIN]
    assert field_values(owner, "Owner") == ["alice@localhost"]
    assert r["participant_config"] == ("cancel", "not-allowed")
    seen = form_of(r["participant_config_open"][-1])
    assert seen.get("type") == "result"
    assert field_values(seen, "Configuration Node Access") == ["participants"]
    assert form_of(r["owner_info"][-1]).get("type") == "form"
    assert form_of(r["participant_info"][-1]).get("type") == "result"


def test_avatar_nodes(deployment):
    """XEP-0407 §7: the XEP-0084 nodes exist when 'Nodes Present' has 'avatar' (a default,
    XEP-0406 §3.6), not without it; admins publish ('Avatar Nodes Update Rights'), participants
    read."""
    server, _ = deployment
    sha1 = "111f4b3c50d7b0df729d299bc6f8e9ef9066971f"
    data = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

    def publish(node, payload):
        return (f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{sha1}'>{payload}"
                f"</item></publish></pubsub>")

    meta = (f"<metadata xmlns='{AVATAR_METADATA}'><info bytes='70' id='{sha1}' height='1' width='1' "
            f"type='image/png'/></metadata>")

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        chan = await create(alice, "avatar")
        await join(alice, chan, "alice")
        await join(bob, chan, "bob")
        r = {"default": await items(bob, chan, AVATAR_METADATA)}
        await configure(alice, chan, {"Nodes Present": [*DEFAULT_NODES]})
        r["absent"] = await iq_error(bob, chan, items_request(AVATAR_METADATA), "get")
        await configure(alice, chan, {"Nodes Present": [*DEFAULT_NODES, "avatar"]})
        await raw_iq(alice, chan, publish(AVATAR_DATA, f"<data xmlns='{AVATAR_DATA}'>{data}</data>"))
        await raw_iq(alice, chan, publish(AVATAR_METADATA, meta))
        r["meta"] = await items(bob, chan, AVATAR_METADATA)
        r["data"] = await items(bob, chan, AVATAR_DATA)
        r["bob_publishes"] = await iq_error(bob, chan, publish(AVATAR_METADATA, meta))
        disco = await raw_iq(bob, chan, f"<query xmlns='{NS_DISCO_ITEMS}' node='mix'/>", "get")
        r["nodes"] = {i.get("node") for i in disco.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
        return r

    r = scenario(server, body)
    assert r["default"] == [], "present and empty in a new channel"
    assert r["absent"] == ("cancel", "item-not-found")
    assert [i.get("id") for i in r["meta"]] == [sha1]
    info = r["meta"][0].find(f"{{{AVATAR_METADATA}}}metadata/{{{AVATAR_METADATA}}}info")
    assert info is not None and info.get("id") == sha1 and info.get("type") == "image/png"
    assert [i.get("id") for i in r["data"]] == [sha1]
    assert r["data"][0].findtext(f"{{{AVATAR_DATA}}}data") == data
    assert r["bob_publishes"] == ("auth", "forbidden")
    assert {AVATAR_DATA, AVATAR_METADATA} <= r["nodes"], r["nodes"]


def test_end_of_life_destroys_the_channel(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        chan = await create(alice, "mortal")
        await join(alice, chan, "alice")
        await join(bob, chan, "bob")
        disco = f"<query xmlns='{NS_DISCO_INFO}'/>"
        r = {"past": await configure_error(alice, chan, {"End of Life": "2001-01-01T00:00:00Z"})}
        eol = time.time() + 4
        stamp = datetime.fromtimestamp(eol, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        eol = parse_stamp(stamp).timestamp()  # whole seconds, as sent
        await configure(alice, chan, {"End of Life": stamp})
        r["stored"] = field_values(form_of((await items(alice, chan, CONFIG))[-1]), "End of Life")
        r["stamp"] = stamp
        await raw_iq(bob, chan, disco, "get")  # alive until then
        # The sweep runs every 2 s: the channel is gone within a few seconds of its End of Life.
        gone_at = None
        while time.time() < eol + 8:
            try:
                await raw_iq(bob, chan, disco, "get")
            except IqError as e:
                r["gone"] = error_condition(e)
                gone_at = time.time()
                break
            await asyncio.sleep(0.25)
        r["early"] = gone_at is not None and gone_at < eol
        if gone_at is not None:
            r["join"] = await iq_error(bob, chan, join_payload("bob", None))
            r["message"] = await message_error(alice, chan, message(alice, chan, body="anyone?"))
        return r

    r = scenario(server, body)
    assert r["past"] == ("modify", "not-acceptable")
    assert r["stored"] == [r["stamp"]]
    assert r.get("gone") == ("cancel", "item-not-found"), "the channel outlived its End of Life"
    assert not r["early"], "the channel was destroyed before its End of Life"
    assert r["join"] == ("cancel", "item-not-found")
    assert r["message"] == ("cancel", "item-not-found")


# ---------------------------------------------------------------------------------------------
# XEP-0407 §5: nick registration (service-wide: last in this file)


def test_registered_nick_becomes_the_nick_in_every_channel(deployment):
    """XEP-0407 §5: a registered nick becomes the registrant's nick in the channels it is in
    ("MUST update participants nodes"), and "a channel MUST NOT use a registered nick for any
    other participant": where another participant holds it, that one is renamed."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        one = await create(alice, "nick-one")
        two = await create(alice, "nick-two")
        a1 = await join(alice, one, "alice")
        a2 = await join(alice, two, "alice")
        await join(bob, one, "bob")
        await join(bob, two, "bob")
        c2 = await join(carol, two, "zed")  # in channel two, the nick is carol's for now
        res = await raw_iq(alice, MIX, f"<register xmlns='{NS_MISC}'><nick>zed</nick></register>")
        note = await wait_for(bob, participants_event(one, "item", a1.id), what="participants item in one")
        carol_item = participants_event(two, "item", c2.id)
        carol_note = await wait_for(
            bob,
            lambda st: carol_item(st) and event_item(st).findtext(
                f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") != "zed",
            what="carol renamed in two")
        send_groupchat(alice, one, "I am zed now")
        r1 = Reflection(await wait_for(bob, groupchat(one, "I am zed now"), what="reflection"))
        send_groupchat(alice, two, "zed here too")
        r2 = Reflection(await wait_for(bob, groupchat(two, "zed here too"), what="reflection"))
        p1 = await bob.plugin["xep_0369"].list_participants(JID(one), timeout=POSITIVE_WAIT)
        p2 = await bob.plugin["xep_0369"].list_participants(JID(two), timeout=POSITIVE_WAIT)
        # A later registration of a nick held by nobody renames alice again.
        await raw_iq(alice, MIX, f"<register xmlns='{NS_MISC}'><nick>alys</nick></register>")
        alice_item = participants_event(two, "item", a2.id)
        note2 = await wait_for(
            bob,
            lambda st: alice_item(st) and event_item(st).findtext(
                f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") == "alys",
            what="alice renamed again in two")
        return a1, a2, c2, res, note, carol_note, r1, r2, p1, p2, note2

    a1, a2, c2, res, note, carol_note, r1, r2, p1, p2, note2 = scenario(server, body)
    assert res.xml.findtext(f"{{{NS_MISC}}}register/{{{NS_MISC}}}nick") == "zed"
    assert event_item(note).findtext(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") == "zed"
    carol_nick = event_item(carol_note).findtext(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick")
    assert carol_nick == f"zed-{c2.id}", carol_nick
    assert r1.nick == "zed"
    assert r2.nick == "zed"
    assert {(pid, nick) for pid, nick, _ in p1} >= {(a1.id, "zed")}, p1
    assert {(pid, nick) for pid, nick, _ in p2} >= {(a2.id, "zed"), (c2.id, f"zed-{c2.id}")}, p2
    assert event_item(note2).findtext(f"{{{NS_CORE}}}participant/{{{NS_CORE}}}nick") == "alys"
