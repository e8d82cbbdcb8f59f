"""Discovery of both service domains through a real server, with slixmpp's XEP-0030 plugin."""
import asyncio

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from conftest import MIX, MUC, session


def forms_by_type(info):
    """FORM_TYPE -> {var: [values]} of the XEP-0128 forms in a disco#info result."""
    out = {}
    for form in info["disco_info"].xml.findall("{jabber:x:data}x"):
        fields = {}
        for f in form.findall("{jabber:x:data}field"):
            fields[f.get("var")] = [v.text for v in f.findall("{jabber:x:data}value")]
        out[fields.get("FORM_TYPE", [None])[0]] = fields
    return out


def item_jids(iq):
    """Item JIDs in document order (slixmpp's items interface is a set)."""
    return [i.get("jid") for i in iq["disco_items"].xml.findall("{http://jabber.org/protocol/disco#items}item")]


_LOOP = asyncio.new_event_loop()


def run(coro):
    return _LOOP.run_until_complete(coro)


def test_mix_domain_disco_info(deployment):
    server, _ = deployment

    async def go():
        c = await session(server)
        try:
            info = await c.plugin["xep_0030"].get_info(jid=MIX, timeout=10)
        finally:
            await c.disconnect()
        return info

    info = run(go())
    identities = info["disco_info"]["identities"]
    assert ("conference", "mix", "en", "Channels (MIX)") in identities or any(
        i[0] == "conference" and i[1] == "mix" for i in identities)
    features = info["disco_info"]["features"]
    assert "urn:xmpp:mix:core:1" in features
    assert "http://jabber.org/protocol/muc" not in features  # XEP-0408: never MUC on the MIX domain
    forms = forms_by_type(info)
    assert forms["urn:xmpp:mix:muc:0#muc-mirror"]["muc-mirror"] == [MUC]
    assert forms["urn:xmpp:mix:0#serviceinfo"]["urn:xmpp:mix:nodes:muc_mirror"] == [MUC]


def test_muc_domain_disco_info(deployment):
    server, _ = deployment

    async def go():
        c = await session(server)
        try:
            return await c.plugin["xep_0030"].get_info(jid=MUC, timeout=10)
        finally:
            await c.disconnect()

    info = run(go())
    assert any(i[0] == "conference" and i[1] == "text" for i in info["disco_info"]["identities"])
    features = info["disco_info"]["features"]
    assert "http://jabber.org/protocol/muc" in features
    assert not [f for f in features if f.startswith("urn:xmpp:mix")]  # never MIX on the MUC domain
    assert forms_by_type(info)["urn:xmpp:mix:muc:0#mix-mirror"]["mix-mirror"] == [MIX]


def test_disco_items_lists_public_channels_paged(deployment):
    server, mixd = deployment
    for name, public in [("ash", True), ("birch", True), ("cedar", False), ("dogwood", True)]:
        code, body = mixd.http("POST", "/channels", {"name": name, "public": public})
        assert code in (201, 409), body

    async def go():
        c = await session(server)
        try:
            pages = []
            for domain in (MIX, MUC):
                first = await c.plugin["xep_0030"].get_items(jid=domain, timeout=10)
                items = item_jids(first)
                pages.append((domain, items))
            # RSM: two at a time (slixmpp's XEP-0059 iterator), must give each public channel once.
            seen = []
            async for page in _rsm_pages(c, MIX, 2):
                seen.extend(page)
            return pages, seen
        finally:
            await c.disconnect()

    pages, seen = run(go())
    for domain, items in pages:
        assert items == [f"ash@{domain}", f"birch@{domain}", f"dogwood@{domain}"], items
    assert seen == [f"ash@{MIX}", f"birch@{MIX}", f"dogwood@{MIX}"]


async def _rsm_pages(c, jid, size):
    """Page through disco#items by hand with XEP-0059 max/after."""
    after = None
    while True:
        iq = c.Iq(stype="get", sto=jid)
        iq["disco_items"]["rsm"]["max"] = str(size)
        if after:
            iq["disco_items"]["rsm"]["after"] = after
        res = await iq.send(timeout=10)
        items = item_jids(res)
        if not items:
            return
        yield items
        after = res["disco_items"]["rsm"]["last"]
        if len(items) < size:
            return


def test_unknown_iq_and_missing_channel_errors(deployment):
    server, _ = deployment

    async def go():
        c = await session(server)
        try:
            results = {}
            iq = c.Iq(stype="get", sto=MIX)
            iq.append(ET.Element("{urn:example:unknown}query"))
            try:
                await iq.send(timeout=10)
            except IqError as e:
                results["unknown"] = (e.iq["error"]["type"], e.iq["error"]["condition"])
            try:
                await c.plugin["xep_0030"].get_info(jid=f"nosuch@{MUC}", timeout=10)
            except IqError as e:
                results["missing"] = (e.iq["error"]["type"], e.iq["error"]["condition"])
            await c.plugin["xep_0199"].send_ping(MIX, timeout=10)
            results["ping"] = "ok"
            return results
        finally:
            await c.disconnect()

    r = run(go())
    assert r["unknown"] == ("cancel", "service-unavailable")
    assert r["missing"] == ("cancel", "item-not-found")
    assert r["ping"] == "ok"


def test_each_link_receives_only_its_own_domain(deployment):
    """ejabberd may hand any domain's stanzas to any component link: mixd counts every stanza that
    arrives on the other domain's link; after traffic to both domains the count must be zero."""
    server, mixd = deployment

    async def go():
        c = await session(server)
        try:
            for _ in range(5):
                await c.plugin["xep_0030"].get_info(jid=MIX, timeout=10)
                await c.plugin["xep_0030"].get_info(jid=MUC, timeout=10)
        finally:
            await c.disconnect()

    run(go())
    code, metrics = mixd.http("GET", "/metrics")
    assert code == 200
    assert 'mixd_stanzas_in_total{domain="mix",kind="iq"}' in metrics
    assert 'mixd_stanzas_in_total{domain="muc",kind="iq"}' in metrics
    assert "mixd_misrouted_total" not in metrics, metrics
