//! The Noise_XX_25519_AESGCM_SHA256 handshake as WhatsApp runs it, and the frame cipher.
