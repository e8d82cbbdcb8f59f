//! Channels and the MIX protocol (XEP-0369 family).
//!
//! A pure library: it takes parsed stanzas and the state the shell read from `mam-store`, and
//! returns the stanzas to send. It never does I/O and never reads the clock.
//!
//! Served so far: the service entity itself (XEP-0030 discovery with the XEP-0128 mirror forms,
//! XEP-0199 ping) and the rules every request obeys (one answer per request, never an answer to
//! an error). Channels' own protocol comes next (issue 3).

pub mod channel;
pub mod disco;
pub mod request;
pub mod service;
pub mod stanza;
pub mod xml;

/// The two domains mixd serves: the same channels on both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domains {
    /// The MIX domain (XEP-0369).
    pub mix: jid::BareJid,
    /// The MUC-mirror domain (XEP-0045 rooms of the same channels).
    pub muc: jid::BareJid,
}
