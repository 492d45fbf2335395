//! WhatsApp's binary XML node codec (token dictionary version 3).
