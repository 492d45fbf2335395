//! Noise benchmarks: the transport cipher (encrypt and decrypt of 1 KiB and 64 KiB
//! frames) and a full handshake between the client initiator and the simulator's
//! responder in process (key generation, three DH pairs each side, certificate chain
//! verification with two XEdDSA checks, ClientPayload encryption).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use std::time::{Duration, Instant};
use waevent::noise::client_payload::{Login, login_payload};
use waevent::noise::{ClientHandshake, Transport};
use waevent::signal::curve::KeyPair;
use waevent::sim::certs::{SimCertAuthority, Validity};
use waevent::sim::handshake::accept_client_hello;

const NOW: u64 = 1_790_000_000;

struct Setup {
    rng: StdRng,
    ca: SimCertAuthority,
    server_static: KeyPair,
    client_static: KeyPair,
    chain: Vec<u8>,
    payload: Vec<u8>,
}

fn setup() -> Setup {
    let mut rng = StdRng::seed_from_u64(1);
    let ca = SimCertAuthority::generate(&mut rng);
    let server_static = KeyPair::generate(&mut rng);
    let client_static = KeyPair::generate(&mut rng);
    let chain = ca.chain_bytes(
        &server_static.public,
        Validity::days_around(NOW, 30),
        &mut rng,
    );
    let payload = login_payload(&Login::new("5511999999999", 3))
        .unwrap()
        .encode_to_vec();
    Setup {
        rng,
        ca,
        server_static,
        client_static,
        chain,
        payload,
    }
}

fn handshake(s: &mut Setup) -> (Transport, Transport) {
    let (client, first) = ClientHandshake::start(&s.client_static, s.ca.trust_root(), &mut s.rng);
    let (server, hello) =
        accept_client_hello(&first[7..], &s.server_static, &s.chain, &mut s.rng).unwrap();
    let verified = client.process_server_hello(&hello[3..], NOW).unwrap();
    let (finish, client_transport) = verified.finish(&s.payload).unwrap();
    let accepted = server.process_client_finish(&finish[3..]).unwrap();
    (client_transport, accepted.transport)
}

fn bench_handshake(c: &mut Criterion) {
    let mut s = setup();
    c.bench_function("noise/handshake_initiator_and_sim_responder", |b| {
        b.iter(|| black_box(handshake(&mut s)))
    });
}

fn bench_transport(c: &mut Criterion) {
    let mut s = setup();
    let mut group = c.benchmark_group("noise/transport");
    for size in [1024usize, 64 * 1024] {
        let plaintext = vec![0x5Au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        let (mut client, _) = handshake(&mut s);
        group.bench_with_input(BenchmarkId::new("encrypt", size), &plaintext, |b, p| {
            b.iter(|| black_box(client.encrypt_frame(p).unwrap()))
        });
        // Frames must be opened in counter order: encrypt them in batches outside the
        // timed section, then time opening them.
        group.bench_with_input(BenchmarkId::new("decrypt", size), &plaintext, |b, p| {
            b.iter_custom(|iters| {
                let (mut client, mut server) = handshake(&mut s);
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(256);
                    left -= batch;
                    let frames: Vec<Vec<u8>> = (0..batch)
                        .map(|_| client.encrypt_frame(p).unwrap())
                        .collect();
                    let start = Instant::now();
                    for f in &frames {
                        black_box(server.decrypt_frame(&f[3..]).unwrap());
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_transport, bench_handshake);
criterion_main!(benches);
