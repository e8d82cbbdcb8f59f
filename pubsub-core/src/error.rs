//! XEP-0060 errors: each variant names the stanza error condition, its type and the
//! pubsub-specific condition (`http://jabber.org/protocol/pubsub#errors`) the XEP gives it.

/// Why an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PubsubError {
    /// §7.1.3.5, §6.1.3.12: no such node.
    #[error("no such node")]
    NodeNotFound,
    /// §7.2.3.4: no such item.
    #[error("no such item")]
    ItemNotFound,
    /// §7.1.3.1, §6.1.3.8: insufficient privileges (also: outcasts).
    #[error("insufficient privileges")]
    Forbidden,
    /// §6.1.3.4, §6.5.9.5: the node is a whitelist and the requester is not on it.
    #[error("not on the node's whitelist")]
    ClosedNode,
    /// §8.1.3: a node of that name exists.
    #[error("node exists")]
    NodeExists,
    /// §7.2.3.3, §8.1.3: node id required.
    #[error("node id required")]
    NodeIdRequired,
    /// §7.1.3.6 / §7.2.3.3: an item (or its id) is required.
    #[error("item required")]
    ItemRequired,
    /// §7.1.3.5: the payload does not fit the node.
    #[error("invalid payload")]
    InvalidPayload,
    /// §7.1.3.4: the payload is too big.
    #[error("payload too big")]
    PayloadTooBig,
    /// §6.1.3.1: the subscription JID does not match the requester.
    #[error("subscription JID does not match the requester")]
    InvalidJid,
    /// §6.2.3.2: no such subscriber.
    #[error("not subscribed")]
    NotSubscribed,
    /// §6.1.3.7: the node does not take subscriptions.
    #[error("subscriptions not supported")]
    SubscriptionsUnsupported,
    /// §8.5.3.4: nothing is persisted.
    #[error("persistent items not supported")]
    PersistenceUnsupported,
    /// §8.9.2.4 (owner use case): the last owner cannot step down.
    #[error("the last owner cannot be removed")]
    LastOwner,
}

impl PubsubError {
    /// The RFC 6120 defined condition, the error type, and the pubsub#errors condition.
    pub fn condition(self) -> (&'static str, &'static str, Option<&'static str>) {
        use PubsubError::*;
        match self {
            NodeNotFound | ItemNotFound => ("item-not-found", "cancel", None),
            Forbidden => ("forbidden", "auth", None),
            ClosedNode => ("not-allowed", "cancel", Some("closed-node")),
            NodeExists => ("conflict", "cancel", None),
            NodeIdRequired => ("bad-request", "modify", Some("nodeid-required")),
            ItemRequired => ("bad-request", "modify", Some("item-required")),
            InvalidPayload => ("bad-request", "modify", Some("invalid-payload")),
            PayloadTooBig => ("not-acceptable", "modify", Some("payload-too-big")),
            InvalidJid => ("bad-request", "modify", Some("invalid-jid")),
            NotSubscribed => ("unexpected-request", "cancel", Some("not-subscribed")),
            SubscriptionsUnsupported => ("feature-not-implemented", "cancel", Some("unsupported")),
            PersistenceUnsupported => ("feature-not-implemented", "cancel", Some("unsupported")),
            LastOwner => ("conflict", "cancel", None),
        }
    }
}
