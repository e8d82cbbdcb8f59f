//! End-to-end tests: the built `mixd` binary against real servers and real clients.
//!
//! One test binary (`autotests = false`) so 2-core CI links once. Where a new test goes:
//! - `lifecycle`: start, reconnect, shutdown, configuration errors, health;
//! - `scripts`: the scansion scripts of `tests/scripts/`, in component and client mode;
//! - `interop`: third-party client libraries (slixmpp) through Prosody and ejabberd.

mod durability;
mod harness;
mod lifecycle;
mod scansion;
mod scripts;
