//! The XEP-0045 face of mixd's channels: each channel is also a MUC room on the mirror domain.
//!
//! Served so far: the mirror service entity's discovery (XEP-0030, XEP-0408 form). Rooms come
//! with the MUC-mirror issue.

pub mod disco;
