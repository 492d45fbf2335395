//! The client initiator against the simulator's responder, in memory: bytes are passed
//! between them exactly as a websocket would (in chunks), for registration and login
//! payloads, every certificate failure, tampering and malformed server hellos.

#![cfg(feature = "sim")]

use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use waevent::noise::client_payload::{Login, Registration, login_payload, registration_payload};
use waevent::noise::{
    CertError, CertRole, ClientHandshake, FrameDecoder, HandshakeError, Transport, TransportError,
    TrustRoot, VerifiedHandshake,
};
use waevent::proto::cert::CertChain;
use waevent::proto::wa6::{ClientPayload, HandshakeMessage};
use waevent::signal::curve::KeyPair;
use waevent::sim::certs::{ChainDefect, SimCertAuthority, Validity};
use waevent::sim::handshake::{
    AcceptedClient, AwaitingClientFinish, ResponderError, ServerFrameReader, accept_client_hello,
};

const NOW: u64 = 1_785_000_000;

struct World {
    rng: StdRng,
    ca: SimCertAuthority,
    server_static: KeyPair,
    client_static: KeyPair,
}

fn world(seed: u64) -> World {
    let mut rng = StdRng::seed_from_u64(seed);
    let ca = SimCertAuthority::generate(&mut rng);
    let server_static = KeyPair::generate(&mut rng);
    let client_static = KeyPair::generate(&mut rng);
    World {
        rng,
        ca,
        server_static,
        client_static,
    }
}

/// Feeds `bytes` to `push` in random chunks and collects the frames.
fn feed<E: std::fmt::Debug>(
    rng: &mut StdRng,
    bytes: &[u8],
    mut push: impl FnMut(&[u8]) -> Result<Vec<Vec<u8>>, E>,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(17));
        let (chunk, tail) = rest.split_at(n);
        out.extend(push(chunk).unwrap());
        rest = tail;
    }
    out
}

fn one(frames: Vec<Vec<u8>>) -> Vec<u8> {
    assert_eq!(frames.len(), 1, "expected exactly one frame");
    frames.into_iter().next().unwrap()
}

/// Runs start → ServerHello through the reader/decoder; returns the client outcome and
/// the server state.
fn hello_round(
    w: &mut World,
    chain: &CertChain,
    trust: TrustRoot,
) -> (
    Result<VerifiedHandshake, HandshakeError>,
    AwaitingClientFinish,
    ServerFrameReader,
    FrameDecoder,
) {
    let (client, first) = ClientHandshake::start(&w.client_static, trust, &mut w.rng);
    let mut reader = ServerFrameReader::new();
    let rng = &mut w.rng;
    let hello = one(feed(rng, &first, |c| reader.push(c)));
    let (server, server_hello) =
        accept_client_hello(&hello, &w.server_static, &chain.encode_to_vec(), &mut w.rng).unwrap();
    let mut decoder = FrameDecoder::new();
    let payload = one(feed(&mut w.rng, &server_hello, |c| decoder.push(c)));
    (
        client.process_server_hello(&payload, NOW),
        server,
        reader,
        decoder,
    )
}

fn valid_chain(w: &mut World) -> CertChain {
    w.ca.chain(
        &w.server_static.public,
        Validity::days_around(NOW, 30),
        &mut w.rng,
    )
}

fn full_handshake(w: &mut World, payload: &ClientPayload) -> (Transport, AcceptedClient) {
    let chain = valid_chain(w);
    let trust = w.ca.trust_root();
    let (client, server, mut reader, _) = hello_round(w, &chain, trust);
    let client = client.unwrap();
    assert_eq!(client.server_static(), w.server_static.public);
    assert_eq!(client.cert_chain().leaf.key, w.server_static.public);
    let (finish, client_transport) = client.finish(&payload.encode_to_vec()).unwrap();
    let rng = &mut w.rng;
    let finish = one(feed(rng, &finish, |c| reader.push(c)));
    let accepted = server.process_client_finish(&finish).unwrap();
    (client_transport, accepted)
}

fn exchange(client: &mut Transport, server: &mut Transport) {
    for i in 0..20usize {
        let msg = vec![i as u8; i * 97];
        let f = client.encrypt_frame(&msg).unwrap();
        let mut d = FrameDecoder::new();
        assert_eq!(
            server.decrypt_frame(&one(d.push(&f).unwrap())).unwrap(),
            msg
        );
        let back = format!("reply {i}");
        let f = server.encrypt_frame(back.as_bytes()).unwrap();
        assert_eq!(client.decrypt_frame(&f[3..]).unwrap(), back.as_bytes());
    }
}

fn registration(rng: &mut StdRng) -> ClientPayload {
    let identity = KeyPair::generate(rng);
    let spk = KeyPair::generate(rng);
    let sig = identity.sign(rng, &spk.public.serialize());
    registration_payload(&Registration::new(
        rng.r#gen(),
        identity.public,
        1,
        spk.public,
        sig,
    ))
    .unwrap()
}

#[test]
fn registration_handshake_then_transport_both_ways() {
    let mut w = world(1);
    let payload = registration(&mut w.rng);
    let (mut client, mut accepted) = full_handshake(&mut w, &payload);
    assert_eq!(accepted.client_static, w.client_static.public);
    assert_eq!(accepted.payload, payload);
    assert!(accepted.payload.device_pairing_data.is_some());
    exchange(&mut client, &mut accepted.transport);
}

#[test]
fn login_handshake_then_transport_both_ways() {
    let mut w = world(2);
    let mut login = Login::new("5511987654321", 12);
    login.push_name = Some("Bot".into());
    let payload = login_payload(&login).unwrap();
    let (mut client, mut accepted) = full_handshake(&mut w, &payload);
    assert_eq!(accepted.payload.username, Some(5_511_987_654_321));
    assert_eq!(accepted.payload.device, Some(12));
    assert_eq!(accepted.payload, payload);
    exchange(&mut client, &mut accepted.transport);
}

#[test]
fn routing_info_preintro_reaches_the_server_and_is_not_in_the_prologue() {
    let mut w = world(3);
    let chain = valid_chain(&mut w);
    let (client, first) = ClientHandshake::start_with_routing_info(
        &w.client_static,
        w.ca.trust_root(),
        b"\x08\x02\x10\x05",
        &mut w.rng,
    )
    .unwrap();
    assert_eq!(&first[..7], b"ED\x00\x01\x00\x00\x04");
    let mut reader = ServerFrameReader::new();
    let hello = one(reader.push(&first).unwrap());
    assert_eq!(reader.routing_info(), Some(&b"\x08\x02\x10\x05"[..]));
    let (server, server_hello) =
        accept_client_hello(&hello, &w.server_static, &chain.encode_to_vec(), &mut w.rng).unwrap();
    let verified = client
        .process_server_hello(&server_hello[3..], NOW)
        .unwrap();
    let (finish, mut transport) = verified.finish(b"").unwrap();
    let mut accepted = server
        .process_client_finish(&one(reader.push(&finish).unwrap()))
        .unwrap();
    exchange(&mut transport, &mut accepted.transport);
}

#[test]
fn the_first_bytes_are_header_then_client_hello() {
    let mut w = world(4);
    let (client, first) =
        ClientHandshake::start(&w.client_static, TrustRoot::default(), &mut w.rng);
    assert_eq!(&first[..4], b"WA\x06\x03");
    let len = u32::from_be_bytes([0, first[4], first[5], first[6]]) as usize;
    assert_eq!(first.len(), 7 + len);
    let msg = HandshakeMessage::decode(&first[7..]).unwrap();
    let hello = msg.client_hello.unwrap();
    assert_eq!(
        hello.ephemeral.as_deref(),
        Some(&client.ephemeral_public().0[..])
    );
    assert_eq!(hello.r#static, None);
    assert_eq!(hello.payload, None);
}

fn cert_error(w: &mut World, chain: CertChain, trust: TrustRoot) -> CertError {
    match hello_round(w, &chain, trust).0 {
        Err(HandshakeError::Certificate(e)) => e,
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[test]
fn every_certificate_failure_is_refused_with_its_own_error() {
    let mut w = world(5);
    let v = Validity::days_around(NOW, 10);
    let root = w.ca.trust_root();
    let key = w.server_static.public;
    let broken = |w: &mut World, defect| {
        let chain = w.ca.broken_chain(defect, &key, v, &mut w.rng);
        cert_error(w, chain, root)
    };

    let e = broken(&mut w, ChainDefect::WrongRoot);
    assert_eq!(e, CertError::NotSignedByRoot { root });
    assert!(
        e.to_string().contains("not signed by the trusted root"),
        "{e}"
    );

    let e = broken(&mut w, ChainDefect::CorruptLeafSignature);
    assert!(matches!(e, CertError::BadLeafSignature { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("leaf certificate signature does not verify"),
        "{e}"
    );

    let e = broken(&mut w, ChainDefect::LeafIssuerSerialMismatch);
    assert_eq!(
        e,
        CertError::SerialMismatch {
            leaf_issuer_serial: 2,
            intermediate_serial: 1
        }
    );

    let e = broken(&mut w, ChainDefect::IntermediateIssuerSerialNonZero);
    assert_eq!(e, CertError::IntermediateIssuerSerial { found: 7 });

    let e = broken(&mut w, ChainDefect::LeafKeyMismatch);
    match &e {
        CertError::LeafKeyMismatch {
            server_static,
            leaf_key,
        } => {
            assert_eq!(server_static, &hex::encode(key.0));
            assert_ne!(leaf_key, server_static);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().contains("is not the server's static key"),
        "{e}"
    );

    let e = broken(&mut w, ChainDefect::ExpiredLeaf);
    assert!(
        matches!(
            e,
            CertError::Expired {
                role: CertRole::Leaf,
                ..
            }
        ),
        "{e:?}"
    );
    // The message carries both dates, readable.
    let msg = e.to_string();
    assert!(
        msg.starts_with("leaf certificate expired at 2026-"),
        "{msg}"
    );
    assert!(msg.contains("now is 2026-07-25T"), "{msg}");

    let e = broken(&mut w, ChainDefect::LeafNotYetValid);
    assert!(
        matches!(
            e,
            CertError::NotYetValid {
                role: CertRole::Leaf,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("not valid yet: valid from 2026-"),
        "{e}"
    );

    let e = broken(&mut w, ChainDefect::ExpiredIntermediate);
    assert!(
        matches!(
            e,
            CertError::Expired {
                role: CertRole::Intermediate,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_chain_from_the_simulator_is_refused_by_the_default_whatsapp_root() {
    let mut w = world(6);
    let chain = valid_chain(&mut w);
    let e = cert_error(&mut w, chain, TrustRoot::default());
    assert_eq!(
        e,
        CertError::NotSignedByRoot {
            root: TrustRoot::default()
        }
    );
    assert!(
        e.to_string()
            .contains("142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b")
    );
}

#[test]
fn a_valid_chain_for_another_servers_key_is_refused() {
    // A server that owns a genuine chain for someone else's static key cannot use it.
    let mut w = world(7);
    let other = KeyPair::generate(&mut w.rng);
    let chain =
        w.ca.chain(&other.public, Validity::days_around(NOW, 1), &mut w.rng);
    let root = w.ca.trust_root();
    assert!(matches!(
        cert_error(&mut w, chain, root),
        CertError::LeafKeyMismatch { .. }
    ));
}

/// Runs a handshake whose ServerHello is modified by `tamper` before the client sees it.
fn tampered_hello(seed: u64, tamper: impl FnOnce(&mut HandshakeMessage)) -> HandshakeError {
    let mut w = world(seed);
    let chain = valid_chain(&mut w);
    let (client, first) = ClientHandshake::start(&w.client_static, w.ca.trust_root(), &mut w.rng);
    let hello = one(ServerFrameReader::new().push(&first).unwrap());
    let (_, server_hello) =
        accept_client_hello(&hello, &w.server_static, &chain.encode_to_vec(), &mut w.rng).unwrap();
    let mut msg = HandshakeMessage::decode(&server_hello[3..]).unwrap();
    tamper(&mut msg);
    client
        .process_server_hello(&msg.encode_to_vec(), NOW)
        .unwrap_err()
}

#[test]
fn tampered_or_incomplete_server_hellos_are_refused() {
    fn sh(m: &mut HandshakeMessage) -> &mut waevent::proto::wa6::handshake_message::ServerHello {
        m.server_hello.as_mut().unwrap()
    }
    assert_eq!(
        tampered_hello(10, |m| sh(m).r#static.as_mut().unwrap()[3] ^= 1),
        HandshakeError::ServerStaticDecrypt
    );
    assert_eq!(
        tampered_hello(11, |m| sh(m).payload.as_mut().unwrap()[40] ^= 1),
        HandshakeError::CertificateDecrypt
    );
    // Another ephemeral changes every key derived after it.
    assert_eq!(
        tampered_hello(12, |m| sh(m).ephemeral.as_mut().unwrap()[0] ^= 2),
        HandshakeError::ServerStaticDecrypt
    );
    assert_eq!(
        tampered_hello(13, |m| sh(m)
            .ephemeral
            .as_mut()
            .unwrap()
            .pop()
            .map(drop)
            .unwrap()),
        HandshakeError::ServerEphemeralLength { len: 31 }
    );
    assert_eq!(
        tampered_hello(14, |m| sh(m).r#static = None),
        HandshakeError::MissingServerStatic
    );
    assert_eq!(
        tampered_hello(15, |m| sh(m).payload = None),
        HandshakeError::MissingCertificate
    );
    assert_eq!(
        tampered_hello(16, |m| m.server_hello = None),
        HandshakeError::MissingServerHello
    );
    assert_eq!(
        tampered_hello(17, |m| sh(m).ephemeral = Some(vec![0; 32])),
        HandshakeError::WeakServerKey("ephemeral")
    );
    let mut w = world(18);
    let (client, _) = ClientHandshake::start(&w.client_static, w.ca.trust_root(), &mut w.rng);
    assert!(matches!(
        client.process_server_hello(&[0x1a, 0xff], NOW),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn tampered_client_finish_is_refused_by_the_server() {
    for (seed, field) in [(20u64, 1usize), (21, 2)] {
        let mut w = world(seed);
        let chain = valid_chain(&mut w);
        let trust = w.ca.trust_root();
        let (client, server, _, _) = hello_round(&mut w, &chain, trust);
        let (finish, _) = client.unwrap().finish(b"\x28\x01").unwrap();
        let mut msg = HandshakeMessage::decode(&finish[3..]).unwrap();
        let cf = msg.client_finish.as_mut().unwrap();
        let target = if field == 1 {
            cf.r#static.as_mut().unwrap()
        } else {
            cf.payload.as_mut().unwrap()
        };
        target[0] ^= 0x80;
        let err = server
            .process_client_finish(&msg.encode_to_vec())
            .unwrap_err();
        let expected = if field == 1 {
            ResponderError::ClientStaticDecrypt
        } else {
            ResponderError::ClientPayloadDecrypt
        };
        assert_eq!(err, expected);
    }
}

#[test]
fn tampered_transport_frame_is_fatal_after_the_handshake() {
    let mut w = world(30);
    let (mut client, mut accepted) = full_handshake(&mut w, &ClientPayload::default());
    let mut f = client.encrypt_frame(b"\x00<iq/>").unwrap();
    let last = f.len() - 1;
    f[last] ^= 1;
    assert_eq!(
        accepted.transport.decrypt_frame(&f[3..]),
        Err(TransportError::Decrypt { counter: 0 })
    );
    let f = client.encrypt_frame(b"\x00next").unwrap();
    assert_eq!(
        accepted.transport.decrypt_frame(&f[3..]),
        Err(TransportError::Broken)
    );
}

#[test]
fn keys_are_not_in_debug_output() {
    let mut w = world(40);
    let (client, _) = ClientHandshake::start(&w.client_static, w.ca.trust_root(), &mut w.rng);
    let s = format!("{client:?}");
    assert!(!s.contains(&hex::encode(w.client_static.private.to_bytes())));
    let chain = valid_chain(&mut w);
    let trust = w.ca.trust_root();
    let (verified, _, _, _) = hello_round(&mut w, &chain, trust);
    let s = format!("{:?}", verified.unwrap());
    assert!(!s.contains(&hex::encode(w.client_static.private.to_bytes())));
}
