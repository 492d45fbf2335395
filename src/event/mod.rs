//! Event cards, RSVPs and the message-secret cryptography that protects them.
