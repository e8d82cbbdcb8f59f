"""The MUC mirror (XEP-0045 on the MUC domain) through a real server, with slixmpp's own MUC
plugin (xep_0045) as the client:

- a room created by entering it (§10.1.1: 201, the creator owns it, locked until configured),
  accepted as an instant room (§10.1.2), the owner's configuration form, cancelled and submitted
  (§10.2: the new name and description on both faces, 104 to the occupants);
- entering (§7.2: occupants, then the newcomer itself with 110/100, history, subject), history
  limited with maxstanzas/maxchars ('Managing Discussion History'), MAM on the room JID (XEP-0313:
  results from room/nick, stanza-ids the live messages had);
- talking (§7.4: the client's id kept, XEP-0359 stanza-id by the room, XEP-0421 occupant-id),
  private messages (§7.5), nick changes (§7.6), leaving (§7.14), XEP-0410 self-ping and room
  disco#info ('Querying for Room Information');
- kick (§8.2), ban (§9.1, shown to MIX clients in the channel's banned node) and destroy (§10.9);
- the two faces of one channel: a MIX participant (xep_0369, joined directly from its full JID)
  and a MUC occupant see each other's messages, nicks and presence, and the channel's archive
  holds each message once.

What a user would check: what the plugin reports (join results, the occupant roster it keeps,
errors) and the stanzas the client receives. Every test uses its own room.
"""
import asyncio
import uuid

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.plugins.xep_0004 import Form

import test_mix
from conftest import MIX, MUC
from test_mix import (MESSAGES, NS_CORE, NS_PRESENCE, PARTICIPANTS, POSITIVE_WAIT, PRESENCE, Reflection,
                      error_condition, groupchat, join, participants_event, run, send_groupchat,
                      wait_for)
from test_mix_misc import items, mam

NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_SID = "urn:xmpp:sid:0"
NS_DATA = "jabber:x:data"
NS_CLIENT = "jabber:client"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
BANNED = "urn:xmpp:mix:nodes:banned"


# ---------------------------------------------------------------------------------------------
# Helpers


class Clients(test_mix.Clients):
    """test_mix's clients (MIX plugins, inbox) with slixmpp's MUC plugin as well."""

    async def login(self, user: str, resource: str | None = None, presence: bool = True,
                    priority: int = 0):
        c = await super().login(user, resource or f"muc-{uuid.uuid4().hex[:6]}", presence, priority)
        c.register_plugin("xep_0045")
        c.muc = c.plugin["xep_0045"]
        return c


def scenario(server, body):
    """Run `body(clients)` on test_mix's loop; every client is logged out afterwards."""
    async def go():
        clients = Clients(server)
        try:
            return await body(clients)
        finally:
            await clients.close()
    return run(go())


def room_jid(name: str) -> JID:
    return JID(f"{name}@{MUC}")


class Entered:
    """What xep_0045.join_muc_wait reports: the self-presence, the subject message, the
    occupants' presences received before it, the history messages (delay from the room)."""

    def __init__(self, result):
        self.presence, self.subject_msg, self.occupants, self.history = result
        self.codes = self.presence["muc"]["status_codes"]
        self.affiliation = self.presence["muc"]["affiliation"]
        self.role = self.presence["muc"]["role"]
        self.jid = self.presence["muc"]["jid"]
        self.nick = self.presence["from"].resource
        self.occupant_id = occupant_id(self.presence)
        self.subject = self.subject_msg["subject"] or ""  # slixmpp: None for <subject/>
        # slixmpp counts the self-presence among the occupants that came online
        self.others = {p["from"].resource: p for p in self.occupants if p["from"].resource != self.nick}


async def enter(c, room: JID, nick: str, **history) -> Entered:
    return Entered(await c.muc.join_muc_wait(room, nick, timeout=POSITIVE_WAIT, **history))


async def enter_refused(c, room: JID, nick: str):
    """(type, condition) of the presence error that refuses c's entry."""
    try:
        e = await enter(c, room, nick)
    except PresenceError as err:
        return err.presence["error"]["type"], err.presence["error"]["condition"]
    raise AssertionError(f"entered {room} as {nick}: {e.presence}")


async def accept_instant_room(c, room: JID):
    """XEP-0045 §10.1.2: the owner accepts the default configuration (an empty submitted form)."""
    await c.muc.set_room_config(room, Form(), timeout=POSITIVE_WAIT)


async def create_room(c, name: str, nick: str) -> tuple[JID, Entered]:
    """c creates the room by entering it and accepts it as an instant room."""
    room = room_jid(name)
    entered = await enter(c, room, nick)
    assert 201 in entered.codes, f"{room} existed already: {entered.presence}"
    await accept_instant_room(c, room)
    return room, entered


def occupant_id(st) -> str | None:
    el = st.xml.find(f"{{{NS_OCCUPANT_ID}}}occupant-id")
    return el.get("id") if el is not None else None


def stanza_id(st) -> tuple[str | None, str | None]:
    el = st.xml.find(f"{{{NS_SID}}}stanza-id")
    return (el.get("id"), el.get("by")) if el is not None else (None, None)


def say(c, room: JID, body: str) -> str:
    """A groupchat message to the room with an id of the client's; returns the id."""
    mid = uuid.uuid4().hex
    m = c.make_message(mto=room, mbody=body, mtype="groupchat")
    m["id"] = mid
    m.send()
    return mid


def from_room(room: JID, body: str | None = None, nick: str | None = None):
    """A groupchat message from the room (from room/nick, if nick is given)."""
    def pred(s):
        return (s.name == "message" and s["type"] == "groupchat" and s["from"].bare == room.bare
                and (nick is None or s["from"].resource == nick)
                and (body is None or s["body"] == body))
    return pred


def subject_from(room: JID, subject: str):
    def pred(s):
        return (s.name == "message" and s["type"] == "groupchat" and s["from"].bare == room.bare
                and s.xml.find(f"{{{NS_CLIENT}}}subject") is not None and s["subject"] == subject)
    return pred


def presence_of(room: JID, nick: str, available: bool = True):
    """Occupant presence from room/nick (available, or unavailable)."""
    def pred(s):
        if s.name != "presence" or s["from"].bare != room.bare or s["from"].resource != nick:
            return False
        if s["type"] == "error" or s.xml.find(f"{{{NS_MUC_USER}}}x") is None:
            return False
        return (s["type"] == "unavailable") != available
    return pred


def status_message(room: JID, code: int):
    """A message from the room itself with a muc#user status code ('Notification of Configuration
    Changes')."""
    def pred(s):
        return (s.name == "message" and s["from"] == room
                and any(st.get("code") == str(code)
                        for st in s.xml.findall(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}status")))
    return pred


def presence_error(room: JID):
    def pred(s):
        return s.name == "presence" and s["type"] == "error" and s["from"].bare == room.bare
    return pred


def chat_from(room: JID, nick: str, body: str | None = None):
    def pred(s):
        return (s.name == "message" and s["type"] == "chat" and s["from"].bare == room.bare
                and s["from"].resource == nick and (body is None or s["body"] == body))
    return pred


def message_error(mid: str):
    def pred(s):
        return s.name == "message" and s["type"] == "error" and s["id"] == mid
    return pred


def pm(c, to: str, body: str, mtype: str = "chat") -> str:
    mid = uuid.uuid4().hex
    m = c.make_message(mto=to, mbody=body, mtype=mtype)
    m["id"] = mid
    m.send()
    return mid


async def refusal(c, mid: str) -> tuple[str, str]:
    err = await wait_for(c, message_error(mid), what=f"error for message {mid}")
    return err["error"]["type"], err["error"]["condition"]


async def iq_refusal(coro) -> tuple[str, str]:
    try:
        res = await coro
    except IqError as e:
        return error_condition(e)
    raise AssertionError(f"expected an error, got {res}")


def form_fields(x) -> dict:
    """A data form's fields: {var: [values]} (x: a slixmpp Form or an <x xmlns='jabber:x:data'/>)."""
    x = getattr(x, "xml", x)
    return {f.get("var"): [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
            for f in x.findall(f"{{{NS_DATA}}}field") if f.get("var")}


def participant_item(chan: str, nick: str):
    """A participants-node notification from chan about the participant with this nick."""
    def pred(s):
        if not participants_event(chan, "item")(s):
            return False
        return any(n.text == nick for n in s.xml.iter(f"{{{NS_CORE}}}nick"))
    return pred


def encoded_from(pid: str, chan: str):
    """Presence from a participant's encoded JID in the channel (XEP-0403)."""
    want = f"{pid}#{chan}".lower()

    def pred(s):
        return s.name == "presence" and s["from"].bare.lower() == want
    return pred


# ---------------------------------------------------------------------------------------------
# Creating and configuring


def test_create_room_by_entering_it(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room = room_jid("muc-create")
        created = await enter(alice, room, "alice")
        # Locked until the owner configures it (XEP-0045 §10.1.1).
        locked = await enter_refused(bob, room, "bob")
        await accept_instant_room(alice, room)
        joined = await enter(bob, room, "bob")
        return created, locked, joined

    created, locked, joined = scenario(server, body)
    assert {110, 201} <= created.codes, created.presence
    assert (created.affiliation, created.role) == ("owner", "moderator")
    assert created.jid.bare == "alice@localhost"
    assert created.occupant_id
    assert created.subject == "" and created.history == [] and created.others == {}
    assert locked == ("cancel", "item-not-found")
    assert 201 not in joined.codes and 110 in joined.codes
    assert list(joined.others) == ["alice"]
    # The room is a channel of the service: the MIX face exists too.
    code, listing = mixd.http("GET", "/channels")
    assert code == 200 and '"muc-create"' in listing, listing


def test_owner_configures_the_room(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, _ = await create_room(alice, "muc-config", "alice")
        await enter(bob, room, "bob")
        form = await alice.muc.get_room_config(room, timeout=POSITIVE_WAIT)
        first = form_fields(form)
        refused = await iq_refusal(bob.muc.get_room_config(room, timeout=POSITIVE_WAIT))
        await alice.muc.cancel_config(room, timeout=POSITIVE_WAIT)  # §10.2: leaves it as it was
        form.set_values({"muc#roomconfig_roomname": "The Heath",
                         "muc#roomconfig_roomdesc": "Where the witches meet",
                         "muc#roomconfig_changesubject": False})
        await alice.muc.set_room_config(room, form, timeout=POSITIVE_WAIT)
        note = await wait_for(bob, status_message(room, 104), what="configuration change (104)")
        again = form_fields(await alice.muc.get_room_config(room, timeout=POSITIVE_WAIT))
        info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=POSITIVE_WAIT)
        mix_info = await asyncio.wait_for(alice.plugin["xep_0369"].get_channel_info(JID(f"muc-config@{MIX}")),
                                          POSITIVE_WAIT)
        # 'Modifying the Room Subject': with 'changesubject' off, only moderators change it.
        m = bob.make_message(mto=room, mtype="groupchat", msubject="mine now")
        m["id"] = mid = uuid.uuid4().hex
        m.send()
        subject_refused = await refusal(bob, mid)
        return first, refused, note, again, info, mix_info, subject_refused

    first, refused, note, again, info, mix_info, subject_refused = scenario(server, body)
    assert first["FORM_TYPE"] == [ROOMCONFIG]
    assert first["muc#roomconfig_roomname"] == ["muc-config"]
    assert first["muc#roomconfig_whois"] == ["anyone"]  # a JID-visible channel is non-anonymous
    assert first["muc#roomconfig_membersonly"] == ["0"]
    assert first["muc#roomconfig_roomowners"] == ["alice@localhost"]
    assert refused == ("auth", "forbidden")              # §10.2: owners only
    assert note["type"] == "groupchat"
    assert again["muc#roomconfig_roomname"] == ["The Heath"]
    assert again["muc#roomconfig_roomdesc"] == ["Where the witches meet"]
    assert again["muc#roomconfig_changesubject"] == ["0"]
    assert again["muc#roomconfig_whois"] == first["muc#roomconfig_whois"]  # the rest as it was
    q = info["disco_info"]
    assert ("conference", "text", None, "The Heath") in q["identities"]
    roominfo = form_fields(q.xml.find(f"{{{NS_DATA}}}x"))
    assert roominfo["muc#roominfo_description"] == ["Where the witches meet"]
    # The MIX face shows the same channel.
    assert (mix_info["Name"], mix_info["Description"]) == ("The Heath", "Where the witches meet")
    assert subject_refused == ("auth", "forbidden")


# ---------------------------------------------------------------------------------------------
# Entering, talking, history, archive


def test_enter_shows_occupants_self_and_subject(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, a = await create_room(alice, "muc-enter", "alice")
        alice.muc.set_subject(room, "Witches only")
        await wait_for(alice, subject_from(room, "Witches only"), what="subject change")
        b = await enter(bob, room, "bob")
        seen = await wait_for(alice, presence_of(room, "bob"), what="bob's presence")
        return room, a, b, seen, bob.muc.get_roster(room), alice.muc.get_roster(room)

    room, a, b, seen, bob_roster, alice_roster = scenario(server, body)
    # 'Presence Broadcast': the occupants (alice, with her real JID: non-anonymous room), then bob.
    other = b.others["alice"]
    assert (other["muc"]["affiliation"], other["muc"]["role"]) == ("owner", "moderator")
    assert other["muc"]["jid"].bare == "alice@localhost"
    assert occupant_id(other) == a.occupant_id
    assert {110, 100} <= b.codes and 201 not in b.codes
    assert (b.affiliation, b.role) == ("none", "participant")
    assert b.jid.bare == "bob@localhost"
    # 'Room Subject': the subject, and who set it.
    assert b.subject == "Witches only"
    assert b.subject_msg["from"] == JID(f"{room}/alice")
    # Alice hears bob enter, with his real JID and the same occupant id.
    assert seen["muc"]["jid"].bare == "bob@localhost" and occupant_id(seen) == b.occupant_id
    assert sorted(bob_roster) == sorted(alice_roster) == ["alice", "bob"]


def test_groupchat_keeps_the_clients_id(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        room, a = await create_room(alice, "muc-talk", "alice")
        b = await enter(bob, room, "bob")
        mid = say(bob, room, "Harpier cries")
        got = [await wait_for(c, from_room(room, "Harpier cries"), what="reflection") for c in (alice, bob)]
        reply = say(alice, room, "'tis time")
        answer = await wait_for(bob, from_room(room, "'tis time"), what="alice's message")
        # §7.4: a non-occupant is refused, and nobody hears it.
        outsider = say(carol, room, "let me speak")
        refused = await refusal(carol, outsider)
        say(alice, room, "marker")
        await wait_for(bob, from_room(room, "marker"), what="marker")
        heard = [s for s in bob.inbox if from_room(room, "let me speak")(s)]
        return room, a, b, mid, got, reply, answer, refused, heard

    room, a, b, mid, got, reply, answer, refused, heard = scenario(server, body)
    for m in got:
        assert m["from"] == JID(f"{room}/bob")
        assert m["id"] == mid                             # muc#stable_id: the client's id
        assert stanza_id(m)[1] == room.bare               # XEP-0359: by the room
        assert occupant_id(m) == b.occupant_id            # XEP-0421
    assert stanza_id(got[0]) == stanza_id(got[1]) and stanza_id(got[0])[0]
    assert answer["from"] == JID(f"{room}/alice") and answer["id"] == reply
    assert occupant_id(answer) == a.occupant_id
    assert stanza_id(answer)[0] != stanza_id(got[0])[0]
    assert refused == ("modify", "not-acceptable")
    assert heard == []


def test_history_on_entering(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        room, _ = await create_room(alice, "muc-history", "alice")
        live = []
        for i in range(5):
            say(alice, room, f"line {i}")
            live.append(await wait_for(alice, from_room(room, f"line {i}"), what=f"line {i}"))
        three = await enter(bob, room, "bob", maxstanzas=3)
        none = await enter(carol, room, "carol", maxchars=0)
        return room, live, three, none

    room, live, three, none = scenario(server, body)
    assert [m["body"] for m in three.history] == ["line 2", "line 3", "line 4"]
    for h, m in zip(three.history, live[2:]):
        assert h["from"] == JID(f"{room}/alice")
        assert str(h["delay"]["from"]) == room.bare           # 'Discussion History': by the room
        assert h["delay"]["stamp"] is not None
        assert stanza_id(h) == stanza_id(m)               # the same archived message
    assert none.history == []                             # maxchars='0': no history
    assert none.subject == ""                             # the subject still comes


def test_mam_on_the_room_jid(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, a = await create_room(alice, "muc-mam", "alice")
        b = await enter(bob, room, "bob")
        live = {}
        for who, text in ((alice, "first"), (bob, "second"), (alice, "third")):
            say(who, room, text)
            live[text] = await wait_for(bob, from_room(room, text), what=text)
        pm(bob, f"{room}/alice", "not for the archive")
        await wait_for(alice, chat_from(room, "bob", "not for the archive"), what="private message")
        return room, a, b, live, await mam(bob, str(room))

    room, a, b, live, archive = scenario(server, body)
    msgs = list(archive.values())
    assert [m.findtext(f"{{{NS_CLIENT}}}body") for m in msgs] == ["first", "second", "third"]
    ids = {"alice": a.occupant_id, "bob": b.occupant_id}
    for (result_id, m), text in zip(archive.items(), ["first", "second", "third"]):
        nick = m.get("from").partition("/")[2]
        assert m.get("from").partition("/")[0] == room.bare  # results from room/nick
        assert nick == live[text]["from"].resource
        assert result_id == stanza_id(live[text])[0]         # the id the live message had
        sid = m.find(f"{{{NS_SID}}}stanza-id")
        assert sid is not None and (sid.get("id"), sid.get("by")) == (result_id, room.bare)
        oid = m.find(f"{{{NS_OCCUPANT_ID}}}occupant-id")
        assert oid is not None and oid.get("id") == ids[nick]


# ---------------------------------------------------------------------------------------------
# Private messages, nicks, leaving


def test_private_messages(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        room, _ = await create_room(alice, "muc-pm", "alice")
        await enter(bob, room, "bob")
        pm(alice, f"{room}/bob", "psst")
        got = await wait_for(bob, chat_from(room, "alice", "psst"), what="private message")
        pm(bob, str(got["from"]), "what?")
        back = await wait_for(alice, chat_from(room, "bob", "what?"), what="answer")
        nobody = await refusal(alice, pm(alice, f"{room}/nobody", "hello?"))
        as_groupchat = await refusal(alice, pm(alice, f"{room}/bob", "wrong type", "groupchat"))
        outsider = await refusal(carol, pm(carol, f"{room}/bob", "let me in"))
        return bob.boundjid, got, back, nobody, as_groupchat, outsider

    bob_jid, got, back, nobody, as_groupchat, outsider = scenario(server, body)
    assert got["to"] == bob_jid                          # §7.5: to the occupant's full JID
    assert got.xml.find(f"{{{NS_MUC_USER}}}x") is not None  # marked as coming through the room
    assert back["body"] == "what?"
    assert nobody == ("cancel", "item-not-found")        # §7.5
    assert as_groupchat == ("modify", "bad-request")     # §7.5: MUST NOT be groupchat
    assert outsider[1] == "not-acceptable"               # §7.5: only occupants


def test_nick_change(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        room, _ = await create_room(alice, "muc-nick", "alice")
        b = await enter(bob, room, "bob")
        new = await bob.muc.set_self_nick(room, "robert", timeout=POSITIVE_WAIT)
        gone = await wait_for(alice, presence_of(room, "bob", available=False), what="303 for bob")
        came = await wait_for(alice, presence_of(room, "robert"), what="robert's presence")
        say(bob, room, "call me robert")
        msg = await wait_for(alice, from_room(room, "call me robert"), what="robert's message")
        # §7.6: a nick in use is refused with conflict (and robert stays robert).
        bob.send_presence(pto=f"{room}/alice")
        conflict = await wait_for(bob, presence_error(room), what="conflict")
        # 'Nickname Conflict': so is entering with it.
        taken = await enter_refused(carol, room, "robert")
        return b, new, gone, came, msg, conflict, taken, alice.muc.get_roster(room)

    b, new, gone, came, msg, conflict, taken, roster = scenario(server, body)
    assert new == "robert"
    assert {303} <= gone["muc"]["status_codes"] and gone["muc"]["item_nick"] == "robert"
    assert occupant_id(gone) == occupant_id(came) == b.occupant_id  # XEP-0421: the same user
    assert came["muc"]["jid"].bare == "bob@localhost"
    assert msg["from"].resource == "robert"
    assert conflict["error"]["condition"] == "conflict"
    assert taken == ("cancel", "conflict")
    assert sorted(roster) == ["alice", "robert"]


def test_leave(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, _ = await create_room(alice, "muc-leave", "alice")
        await enter(bob, room, "bob")
        bob.muc.leave_muc(room, "bob")
        own = await wait_for(bob, presence_of(room, "bob", available=False), what="own unavailable")
        seen = await wait_for(alice, presence_of(room, "bob", available=False), what="bob leaving")
        late = say(bob, room, "still here?")
        refused = await refusal(bob, late)
        # XEP-0410: no longer an occupant.
        ping = await iq_refusal(bob.plugin["xep_0199"].send_ping(JID(f"{room}/bob"), timeout=POSITIVE_WAIT))
        return own, seen, refused, ping, alice.muc.get_roster(room)

    own, seen, refused, ping, roster = scenario(server, body)
    assert 110 in own["muc"]["status_codes"]
    assert seen["muc"]["role"] == "none" and 110 not in seen["muc"]["status_codes"]
    assert refused == ("modify", "not-acceptable")
    assert ping[1] == "not-acceptable"
    assert roster == ["alice"]


def test_room_disco_and_self_ping(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, _ = await create_room(alice, "muc-disco", "alice")
        alice.muc.set_subject(room, "Brewing")
        await wait_for(alice, subject_from(room, "Brewing"), what="subject change")
        await enter(bob, room, "bob")
        info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=POSITIVE_WAIT)
        pong = await bob.plugin["xep_0199"].send_ping(JID(f"{room}/bob"), timeout=POSITIVE_WAIT)
        return info, pong

    info, pong = scenario(server, body)
    q = info["disco_info"]
    assert ("conference", "text", None, "muc-disco") in q["identities"]
    features = set(q["features"])
    for f in ("http://jabber.org/protocol/muc", "http://jabber.org/protocol/muc#stable_id",
              "http://jabber.org/protocol/muc#self-ping-optimization", NS_OCCUPANT_ID, NS_SID,
              "urn:xmpp:mam:2", "muc_nonanonymous", "muc_persistent", "muc_open"):
        assert f in features, f
    roominfo = form_fields(q.xml.find(f"{{{NS_DATA}}}x"))
    assert roominfo["FORM_TYPE"] == [ROOMINFO]
    assert roominfo["muc#roominfo_subject"] == ["Brewing"]
    assert roominfo["muc#roominfo_occupants"] == ["2"]
    assert pong["type"] == "result"                      # XEP-0410: still in the room


# ---------------------------------------------------------------------------------------------
# Moderation


def test_kick(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, _ = await create_room(alice, "muc-kick", "alice")
        await enter(bob, room, "bob")
        # §8.2: only moderators kick.
        by_bob = await iq_refusal(bob.muc.set_role(room, "alice", "none", timeout=POSITIVE_WAIT))
        await alice.muc.set_role(room, "bob", "none", reason="Avaunt", timeout=POSITIVE_WAIT)
        own = await wait_for(bob, presence_of(room, "bob", available=False), what="bob kicked")
        seen = await wait_for(alice, presence_of(room, "bob", available=False), what="kick")
        refused = await refusal(bob, say(bob, room, "but why"))
        # Bob came through the MUC face: out of the room, out of the channel.
        parts = await alice.plugin["xep_0369"].list_participants(JID(f"muc-kick@{MIX}"),
                                                                 timeout=POSITIVE_WAIT)
        back = await enter(bob, room, "bob")             # a kick is not a ban
        return by_bob, own, seen, refused, parts, back

    by_bob, own, seen, refused, parts, back = scenario(server, body)
    assert by_bob == ("auth", "forbidden")
    assert {110, 307} <= own["muc"]["status_codes"]
    item = own.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
    assert item.findtext(f"{{{NS_MUC_USER}}}reason") == "Avaunt"
    assert item.find(f"{{{NS_MUC_USER}}}actor").get("nick") == "alice"
    assert 307 in seen["muc"]["status_codes"] and seen["muc"]["role"] == "none"
    assert refused == ("modify", "not-acceptable")
    assert [nick for _pid, nick, _jid in parts] == ["alice"]
    assert 110 in back.codes


def test_ban(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        carol = await cl.login("carol")
        room, _ = await create_room(alice, "muc-ban", "alice")
        await enter(bob, room, "bob")
        await enter(carol, room, "carol")
        # §9.1: a mere participant cannot ban.
        by_carol = await iq_refusal(carol.muc.set_affiliation(room, "outcast", jid=JID("bob@localhost"),
                                                              timeout=POSITIVE_WAIT))
        await alice.muc.set_affiliation(room, "outcast", jid=JID("bob@localhost"), reason="Hence",
                                        timeout=POSITIVE_WAIT)
        own = await wait_for(bob, presence_of(room, "bob", available=False), what="bob banned")
        seen = await wait_for(carol, presence_of(room, "bob", available=False), what="ban")
        outcasts = await alice.muc.get_affiliation_list(room, "outcast", timeout=POSITIVE_WAIT)
        again = await enter_refused(bob, room, "bob")
        # The MIX face: the channel's banned node, and no joining through MIX either.
        banned = await items(alice, f"muc-ban@{MIX}", BANNED)
        mix = await iq_refusal(join(bob, f"muc-ban@{MIX}", "bob"))
        return by_carol, own, seen, outcasts, again, banned, mix

    by_carol, own, seen, outcasts, again, banned, mix = scenario(server, body)
    assert by_carol[1] == "forbidden"
    assert {110, 301} <= own["muc"]["status_codes"] and own["muc"]["affiliation"] == "outcast"
    assert 301 in seen["muc"]["status_codes"] and seen["muc"]["role"] == "none"
    assert outcasts == [JID("bob@localhost")]
    assert again == ("auth", "forbidden")                # 'Banned Users'
    assert [i.get("id") for i in banned] == ["bob@localhost"]
    assert mix == ("auth", "forbidden")


def test_destroy(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, _ = await create_room(alice, "muc-destroy", "alice")
        await enter(bob, room, "bob")
        by_bob = await iq_refusal(bob.muc.destroy(room, timeout=POSITIVE_WAIT))
        await alice.muc.destroy(room, reason="Macbeth doth come", altroom=f"heath@{MUC}",
                                timeout=POSITIVE_WAIT)
        told = {}
        for c, nick in ((bob, "bob"), (alice, "alice")):
            told[nick] = await wait_for(c, presence_of(room, nick, available=False), what="destroy")
        gone = await iq_refusal(bob.plugin["xep_0030"].get_info(jid=room, timeout=POSITIVE_WAIT))
        mix = await iq_refusal(join(bob, f"muc-destroy@{MIX}", "bob"))
        return by_bob, told, gone, mix

    by_bob, told, gone, mix = scenario(server, body)
    assert by_bob == ("auth", "forbidden")               # §10.9: owners only
    for p in told.values():
        d = p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}destroy")
        assert d is not None, p
        assert d.get("jid") == f"heath@{MUC}"
        assert d.findtext(f"{{{NS_MUC_USER}}}reason") == "Macbeth doth come"
        item = p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
        assert (item.get("affiliation"), item.get("role")) == ("none", "none")  # MUC-OWN-20
    assert gone == ("cancel", "item-not-found")
    assert mix == ("cancel", "item-not-found")           # the channel went with the room
    code, listing = mixd.http("GET", "/channels")
    assert '"muc-destroy"' not in listing, listing


# ---------------------------------------------------------------------------------------------
# One channel, two faces


async def mix_join(c, chan: str, nick: str, **presence):
    """c joins directly from its full JID (as on Prosody, which has no MIX-PAM) and sends the
    channel presence; returns the join result once its own presence is back."""
    joined = await join(c, chan, nick, nodes=(MESSAGES, PARTICIPANTS, PRESENCE))
    c.send_presence(pto=chan, **presence)
    await wait_for(c, encoded_from(joined.id, chan), what="own channel presence")
    return joined


async def mix_member(cl, user: str, chan: str, nick: str, **presence):
    """A MIX client, logged in and joined, with presence in the channel."""
    c = await cl.login(user)
    return c, await mix_join(c, chan, nick, **presence)


def test_two_faces_messages_presence_and_archive(deployment):
    server, mixd = deployment

    async def body(cl):
        carol = await cl.login("carol")
        name = await carol.plugin["xep_0369"].create_channel(JID(MIX), "faces", timeout=POSITIVE_WAIT)
        chan, room = f"{name}@{MIX}", room_jid(name)
        j = await mix_join(carol, chan, "carol")
        bob = await cl.login("bob")
        b = await enter(bob, room, "bob")
        # The MIX client sees the occupant join: a participant, with presence.
        part = await wait_for(carol, participant_item(chan, "bob"), what="bob as a participant")
        bob_pid = part.xml.find(".//{http://jabber.org/protocol/pubsub#event}item").get("id")
        bob_mix = await wait_for(carol, encoded_from(bob_pid, chan), what="bob's channel presence")
        # Messages both ways.
        oid = send_groupchat(carol, chan, "from the MIX side")
        mine = Reflection(await wait_for(carol, groupchat(chan, "from the MIX side"), what="own reflection"))
        at_bob = await wait_for(bob, from_room(room, "from the MIX side"), what="MIX message in the room")
        mid = say(bob, room, "from the MUC side")
        own = await wait_for(bob, from_room(room, "from the MUC side"), what="own reflection")
        at_carol = Reflection(await wait_for(carol, groupchat(chan, "from the MUC side"),
                                             what="MUC message in the channel"))
        archive = await mam(carol, chan)
        # Presence back and forth: carol goes away, bob leaves.
        carol.send_presence(pto=chan, ptype="unavailable")
        carol_off = await wait_for(bob, presence_of(room, "carol", available=False), what="carol offline")
        bob.muc.leave_muc(room, "bob")
        bob_off = await wait_for(carol, lambda s: encoded_from(bob_pid, chan)(s)
                                 and s["type"] == "unavailable", what="bob's unavailable channel presence")
        bob_out = await wait_for(carol, participants_event(chan, "retract", bob_pid), what="bob's retract")
        parts = await carol.plugin["xep_0369"].list_participants(JID(chan), timeout=POSITIVE_WAIT)
        return (room, j, b, part, bob_pid, bob_mix, oid, mine, at_bob, mid, own, at_carol, archive,
                carol_off, bob_off, bob_out, parts)

    (room, j, b, part, bob_pid, bob_mix, oid, mine, at_bob, mid, own, at_carol, archive,
     carol_off, bob_off, bob_out, parts) = scenario(server, body)
    # The MUC occupant sees the MIX participant among the occupants: the channel's owner is the
    # room's owner.
    carol_occ = b.others["carol"]
    assert (carol_occ["muc"]["affiliation"], carol_occ["muc"]["role"]) == ("owner", "moderator")
    assert carol_occ["muc"]["jid"].bare == "carol@localhost"
    assert occupant_id(carol_occ) == j.id
    # ... and the MIX participant sees the occupant as a participant, with presence.
    p = part.xml.find(f".//{{{NS_CORE}}}participant")
    assert p.findtext(f"{{{NS_CORE}}}nick") == "bob" and p.findtext(f"{{{NS_CORE}}}jid") == "bob@localhost"
    assert bob_pid == b.occupant_id
    assert bob_mix.xml.find(f"{{{NS_PRESENCE}}}mix/{{{NS_PRESENCE}}}nick").text == "bob"
    # MIX -> MUC: from room/carol, the archive id as stanza-id by the room.
    assert at_bob["from"] == JID(f"{room}/carol")
    assert stanza_id(at_bob) == (mine.stanza_id, room.bare)
    assert occupant_id(at_bob) == j.id
    assert mine.origin_id == oid
    # MUC -> MIX: nick and JID in <mix/>, the same archive id on both faces.
    assert (at_carol.nick, at_carol.jid, at_carol.sender) == ("bob", "bob@localhost", bob_pid)
    assert own["id"] == mid
    assert stanza_id(own) == (at_carol.stanza_id, room.bare)
    # One archive, each message once.
    bodies = [m.findtext(f"{{{NS_CLIENT}}}body") for m in archive.values()]
    assert bodies == ["from the MIX side", "from the MUC side"]
    assert list(archive) == [mine.stanza_id, at_carol.stanza_id]
    # Presence: gone on both faces; bob, who came through the MUC, is no longer a participant.
    assert carol_off["muc"]["role"] == "none"
    assert bob_off["type"] == "unavailable"
    assert [nick for _pid, nick, _jid in parts] == ["carol"]


def test_two_faces_nick_changes(deployment):
    server, mixd = deployment

    async def body(cl):
        carol = await cl.login("carol")
        await carol.plugin["xep_0369"].create_channel(JID(MIX), "faces-nick", timeout=POSITIVE_WAIT)
        chan, room = f"faces-nick@{MIX}", room_jid("faces-nick")
        j = await mix_join(carol, chan, "carol")
        bob = await cl.login("bob")
        b = await enter(bob, room, "bob")
        # A nick held on one face is taken on the other.
        bob.send_presence(pto=f"{room}/carol")
        conflict = await wait_for(bob, presence_error(room), what="conflict")
        # MUC rename -> the MIX participants node.
        await bob.muc.set_self_nick(room, "robert", timeout=POSITIVE_WAIT)
        renamed = await wait_for(carol, participant_item(chan, "robert"), what="participants item (robert)")
        say(bob, room, "robert here")
        r = Reflection(await wait_for(carol, groupchat(chan, "robert here"), what="robert's message"))
        # MIX rename -> the room's occupants.
        await carol.plugin["xep_0369"].set_nick(JID(chan), "caroline", timeout=POSITIVE_WAIT)
        came = await wait_for(bob, presence_of(room, "caroline"), what="caroline's presence")
        send_groupchat(carol, chan, "caroline here")
        m = await wait_for(bob, from_room(room, "caroline here"), what="caroline's message")
        return j, conflict, renamed, r, came, m, bob.muc.get_roster(room)

    j, conflict, renamed, r, came, m, roster = scenario(server, body)
    assert conflict["error"]["condition"] == "conflict"
    assert renamed.xml.find(f".//{{{NS_CORE}}}nick").text == "robert"
    assert r.nick == "robert"
    assert occupant_id(came) == j.id
    assert m["from"].resource == "caroline"
    assert sorted(roster) == ["caroline", "robert"]


def test_two_faces_ban_of_a_mix_participant(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        room, _ = await create_room(alice, "faces-ban", "alice")
        chan = f"faces-ban@{MIX}"
        carol, j = await mix_member(cl, "carol", chan, "carol")
        await wait_for(alice, presence_of(room, "carol"), what="carol's presence")
        await alice.muc.set_affiliation(room, "outcast", jid=JID("carol@localhost"), timeout=POSITIVE_WAIT)
        seen = await wait_for(alice, presence_of(room, "carol", available=False), what="carol banned")
        # The MIX client is out of the channel: its messages are refused, it cannot join again.
        mid = send_groupchat(carol, chan, "still here?")
        refused = await wait_for(carol, lambda s: s.name == "message" and s["type"] == "error"
                                 and s["from"].bare == chan, what="refusal")
        again = await iq_refusal(join(carol, chan, "carol"))
        parts = await alice.plugin["xep_0369"].list_participants(JID(chan), timeout=POSITIVE_WAIT)
        return seen, refused, again, parts, alice.muc.get_roster(room)

    seen, refused, again, parts, roster = scenario(server, body)
    assert 301 in seen["muc"]["status_codes"] and seen["muc"]["affiliation"] == "outcast"
    assert refused["error"]["condition"] == "forbidden"
    assert again == ("auth", "forbidden")
    assert [nick for _pid, nick, _jid in parts] == ["alice"]
    assert roster == ["alice"]


def test_two_faces_entering_shows_mix_participants_show_and_status(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        room, _ = await create_room(alice, "faces-status", "alice")
        await mix_member(cl, "carol", f"faces-status@{MIX}", "carol", pshow="away", pstatus="brewing")
        live = await wait_for(alice, presence_of(room, "carol"), what="carol's presence")
        bob = await cl.login("bob")
        b = await enter(bob, room, "bob")
        return live, b.others["carol"]

    live, entered = scenario(server, body)
    assert (live["show"], live["status"]) == ("away", "brewing")  # the live broadcast has them
    assert (entered["show"], entered["status"]) == ("away", "brewing"), entered


def test_two_faces_mix_rename_is_a_303_with_the_new_nick(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        room, _ = await create_room(alice, "faces-303", "alice")
        carol, j = await mix_member(cl, "carol", f"faces-303@{MIX}", "carol")
        await wait_for(alice, presence_of(room, "carol"), what="carol's presence")
        await carol.plugin["xep_0369"].set_nick(JID(f"faces-303@{MIX}"), "caroline", timeout=POSITIVE_WAIT)
        gone = await wait_for(alice, presence_of(room, "carol", available=False), what="303 for carol")
        came = await wait_for(alice, presence_of(room, "caroline"), what="caroline's presence")
        return gone, came, alice.muc.get_roster(room)

    gone, came, roster = scenario(server, body)
    assert sorted(roster) == ["alice", "caroline"]
    assert 303 in gone["muc"]["status_codes"]
    assert gone["muc"]["item_nick"] == "caroline", gone
    assert gone["muc"]["jid"].bare == "carol@localhost", gone
    assert came["muc"]["jid"].bare == "carol@localhost", came


def test_two_faces_moderator_kicks_a_mix_participant(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        room, _ = await create_room(alice, "faces-kick", "alice")
        carol, j = await mix_member(cl, "carol", f"faces-kick@{MIX}", "carol")
        await wait_for(alice, presence_of(room, "carol"), what="carol's presence")
        try:
            await alice.muc.set_role(room, "carol", "none", reason="MIX or not", timeout=POSITIVE_WAIT)
        except IqError as e:
            raise AssertionError(f"kick refused: {e.iq}") from None
        seen = await wait_for(alice, presence_of(room, "carol", available=False), what="carol kicked")
        return seen, alice.muc.get_roster(room)

    seen, roster = scenario(server, body)
    assert 307 in seen["muc"]["status_codes"]
    assert roster == ["alice"]


def test_two_faces_mix_participant_answers_a_private_message(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        room, _ = await create_room(alice, "faces-pm", "alice")
        carol, j = await mix_member(cl, "carol", f"faces-pm@{MIX}", "carol")
        await wait_for(alice, presence_of(room, "carol"), what="carol's presence")
        pm(alice, f"{room}/carol", "psst, carol")
        got = await wait_for(carol, lambda s: s.name == "message" and s["body"] == "psst, carol",
                             what="private message")
        mid = pm(carol, str(got["from"]), "yes?")
        answer = asyncio.ensure_future(wait_for(alice, chat_from(room, "carol", "yes?"), what="answer"))
        refused = asyncio.ensure_future(wait_for(carol, message_error(mid), what="refusal"))
        done, pending = await asyncio.wait({answer, refused}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        if refused in done and not refused.exception():
            raise AssertionError(f"the answer was refused: {refused.result()}")
        return answer.result()

    assert scenario(server, body)["body"] == "yes?"


def test_occupant_id_on_every_presence_and_message(deployment):
    server, mixd = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        room, _ = await create_room(alice, "muc-occupant-id", "alice")
        chan = f"muc-occupant-id@{MIX}"
        await enter(bob, room, "bob")
        carol, j = await mix_member(cl, "carol", chan, "carol")
        await wait_for(alice, presence_of(room, "carol"), what="carol's presence")
        alice.muc.set_subject(room, "Hover")
        subject = await wait_for(alice, subject_from(room, "Hover"), what="subject change")
        await carol.plugin["xep_0369"].leave_channel(JID(chan), timeout=POSITIVE_WAIT)
        carol_left = await wait_for(alice, presence_of(room, "carol", available=False), what="carol left")
        await alice.muc.set_affiliation(room, "outcast", jid=JID("bob@localhost"), timeout=POSITIVE_WAIT)
        banned_own = await wait_for(bob, presence_of(room, "bob", available=False), what="bob banned")
        banned_seen = await wait_for(alice, presence_of(room, "bob", available=False), what="ban")
        return subject, carol_left, banned_own, banned_seen

    missing = [str(s) for s in scenario(server, body) if not occupant_id(s)]
    assert not missing, "without occupant-id:\n  " + "\n  ".join(missing)
