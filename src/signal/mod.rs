//! The Signal protocol as WhatsApp deploys it: Curve25519/XEdDSA keys, X3DH, the Double
//! Ratchet, sender keys and the store traits. Sans-IO: nothing here touches sockets or
//! an async runtime.

pub mod curve;
