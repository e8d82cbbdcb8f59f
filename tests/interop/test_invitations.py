"""Invitations across the two faces of a channel, through a real server (Prosody and ejabberd),
with slixmpp clients: its MIX plugins on one side, its MUC plugins (xep_0045, xep_0249) on the
other (REQUIREMENTS §12, issue 6 item 3).

- A MIX participant invites a MUC-only contact: the participant's client asks the channel for an
  invitation (XEP-0407 §4) and hands the contact a XEP-0249 direct invitation to the mirror room;
  the contact, which can only enter rooms, enters the members-only room from it. The MUC join
  cannot carry the token; the live invitation admits its invitee once, as the token would have.
- A MUC occupant's mediated invitation (XEP-0045 §7.8.2) carries a MIX <invitation/> for the
  channel; a MIX client joins the channel with it.

The lifetimes and cancellations of seed 000 are in tests/scripts/muc_invite_lifetimes.scs.
"""
import asyncio

from slixmpp import JID

from conftest import MIX, MUC
from test_mix import POSITIVE_WAIT, wait_for
from test_mix_misc import (ALLOWED, DEFAULT_NODES, NS_MISC, configure, create, invitation_fields,
                           invite, items, join_invited)
from test_muc import enter, enter_refused, scenario

NS_CONFERENCE = "jabber:x:conference"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


def test_a_muc_only_contact_invited_by_a_mix_participant_enters_the_room(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        carol = await cl.login("carol")
        bob = await cl.login("bob")
        alice.register_plugin("xep_0249")
        carol.register_plugin("xep_0249")
        invited = asyncio.get_running_loop().create_future()
        carol.add_event_handler("groupchat_direct_invite",
                                lambda m: invited.done() or invited.set_result(m))
        chan = await create(alice, "x-invite-muc-only")
        room = JID(f"x-invite-muc-only@{MUC}")
        await join_invited(alice, chan, "alice", None)
        # Closed: an allowed node that lists nobody (a members-only room on the MUC face).
        await configure(alice, chan, {"Nodes Present": [*DEFAULT_NODES, "allowed"]})
        r = {"before": await enter_refused(carol, room, "carol")}
        inv = await invite(alice, chan, "carol@localhost")
        # Alice's client hands the invitation over as a XEP-0249 direct invitation to the room
        # (what a MUC-only client reads), with the MIX invitation beside it.
        alice.plugin["xep_0249"].send_invitation(JID("carol@localhost"), room, reason="come in")
        msg = await asyncio.wait_for(invited, POSITIVE_WAIT)
        r["pointed_at"] = msg["groupchat_invite"]["jid"]
        r["entered"] = await enter(carol, JID(msg["groupchat_invite"]["jid"]), "carol")
        r["allowed"] = sorted(i.get("id") for i in await items(alice, chan, ALLOWED))
        # It admitted carol, once: bob, never invited, is still refused.
        r["bob"] = await enter_refused(bob, room, "bob")
        return inv, r

    inv, r = scenario(server, body)
    assert r["before"] == ("auth", "registration-required")
    assert invitation_fields(inv)["invitee"] == "carol@localhost"
    assert r["pointed_at"] == f"x-invite-muc-only@{MUC}"       # the mirror room, not the channel
    assert r["entered"].nick == "carol"
    assert r["entered"].affiliation == "member"                 # XEP-0407 §4: allowed = member
    assert r["allowed"] == ["carol@localhost"]
    assert r["bob"] == ("auth", "registration-required")


def test_a_mediated_invitation_lets_a_mix_client_join_the_channel(deployment):
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        bob = await cl.login("bob")
        chan = await create(alice, "x-invite-to-mix")
        room = JID(f"x-invite-to-mix@{MUC}")
        await configure(alice, chan, {"Nodes Present": [*DEFAULT_NODES, "allowed"]})
        await enter(alice, room, "alice")
        alice.muc.invite(room, JID("bob@localhost"), reason="see you there")
        got = await wait_for(bob, lambda st: st.name == "message"
                             and st["from"] == room
                             and st.xml.find(f"{{{NS_MISC}}}invitation") is not None,
                             what="the mediated invitation")
        inv = got.xml.find(f"{{{NS_MISC}}}invitation")
        joined = await join_invited(bob, chan, "bob", inv)
        return got, inv, joined

    got, inv, joined = scenario(server, body)
    invite_el = got.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite")
    assert invite_el is not None and invite_el.get("from") == f"x-invite-to-mix@{MUC}/alice"
    assert got.xml.find(f"{{{NS_CONFERENCE}}}x").get("jid") == f"x-invite-to-mix@{MUC}"
    f = invitation_fields(inv)
    assert f["channel"] == f"x-invite-to-mix@{MIX}" and f["invitee"] == "bob@localhost"
    assert joined.findtext(f"{{{NS_MISC}}}nick") or joined.get("id")


def test_a_direct_invitation_to_a_members_only_room_after_making_the_invitee_a_member(deployment):
    """DINV-03 (a): XEP-0249 has no room-side protocol; the inviter makes the invitee a member
    first (§0249 'Implementation Notes') and the join it sends is authorised normally."""
    server, _ = deployment

    async def body(cl):
        alice = await cl.login("alice")
        carol = await cl.login("carol")
        bob = await cl.login("bob")
        alice.register_plugin("xep_0249")
        carol.register_plugin("xep_0249")
        invited = asyncio.get_running_loop().create_future()
        carol.add_event_handler("groupchat_direct_invite",
                                lambda m: invited.done() or invited.set_result(m))
        room = JID(f"x-direct@{MUC}")
        await enter(alice, room, "alice")
        form = await alice.muc.get_room_config(room, timeout=POSITIVE_WAIT)
        form.set_values({"muc#roomconfig_membersonly": True})
        await alice.muc.set_room_config(room, form, timeout=POSITIVE_WAIT)
        r = {"before": await enter_refused(carol, room, "carol")}
        await alice.muc.set_affiliation(room, "member", jid=JID("carol@localhost"),
                                        timeout=POSITIVE_WAIT)
        alice.plugin["xep_0249"].send_invitation(JID("carol@localhost"), room, reason="tea")
        msg = await asyncio.wait_for(invited, POSITIVE_WAIT)
        r["reason"] = msg["groupchat_invite"]["reason"]
        r["entered"] = await enter(carol, JID(msg["groupchat_invite"]["jid"]), "carol")
        r["bob"] = await enter_refused(bob, room, "bob")
        return r

    r = scenario(server, body)
    assert r["before"] == ("auth", "registration-required")
    assert r["reason"] == "tea"                     # the server and mixd pass it on unmangled
    assert r["entered"].affiliation == "member"
    assert r["bob"] == ("auth", "registration-required")
