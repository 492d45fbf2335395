//! One-time and signed prekeys on the server (PROTOCOL.md §7): the `encrypt` IQs, sans-IO.
//! The upload procedure itself (generate and store first, upload, mark uploaded) is
//! `Client::upload_prekeys` in `connection`.

use crate::binary::Node;
use crate::jid::Jid;
use crate::signal::curve::{DJB_TYPE, PublicKey};
use crate::signal::identity::{MAX_PREKEY_ID, PreKeyRecord, SignedPreKeyRecord};

/// Keys uploaded the first time (server and local store both empty): WhatsApp Web's
/// `UPLOAD_KEYS_COUNT`.
pub const INITIAL_PREKEY_UPLOAD: usize = 812;
/// Keys uploaded when the server runs low.
pub const PREKEY_BATCH: usize = 50;
/// Upload when the server holds fewer than this many.
pub const MIN_SERVER_PREKEYS: u32 = 5;

/// Why an `encrypt` response or a prekey could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreKeyError {
    /// The count response has no `<count value>` number.
    #[error("prekey count response has no <count value=N>")]
    MissingCount,
    /// A prekey id does not fit the 3 bytes it travels in.
    #[error("prekey id {0} does not fit in 3 bytes")]
    IdTooLarge(u32),
}

/// `id` as the 3-byte big-endian `<id>` content. Refuses ids above 2²⁴−1.
fn id_bytes(id: u32) -> Result<[u8; 3], PreKeyError> {
    if id > MAX_PREKEY_ID {
        return Err(PreKeyError::IdTooLarge(id));
    }
    let [_, a, b, c] = id.to_be_bytes();
    Ok([a, b, c])
}

/// `<key><id>3 bytes</id><value>32 bytes</value></key>`.
pub fn prekey_node(id: u32, public: &PublicKey) -> Result<Node, PreKeyError> {
    Ok(Node::new("key").with_children(vec![
        Node::new("id").with_bytes(id_bytes(id)?.to_vec()),
        Node::new("value").with_bytes(public.as_bytes().to_vec()),
    ]))
}

/// `<skey><id/><value/><signature>64 bytes</signature></skey>`.
pub fn signed_prekey_node(signed: &SignedPreKeyRecord) -> Result<Node, PreKeyError> {
    Ok(Node::new("skey").with_children(vec![
        Node::new("id").with_bytes(id_bytes(signed.id)?.to_vec()),
        Node::new("value").with_bytes(signed.key_pair.public.as_bytes().to_vec()),
        Node::new("signature").with_bytes(signed.signature.to_vec()),
    ]))
}

/// An `<iq xmlns to=s.whatsapp.net type>` with these children and no id yet (the
/// client assigns it when sending).
pub fn server_iq(xmlns: &str, iq_type: &str, children: Vec<Node>) -> Node {
    let iq = Node::new("iq")
        .attr("xmlns", xmlns)
        .attr("type", iq_type)
        .attr("to", Jid::server_jid());
    if children.is_empty() {
        iq
    } else {
        iq.with_children(children)
    }
}

/// The upload IQ: `<iq xmlns="encrypt" type="set"><registration>4 bytes BE
/// </registration><type>05</type><identity>32</identity><list><key/>…</list><skey/></iq>`.
pub fn upload_iq(
    registration_id: u32,
    identity: &PublicKey,
    prekeys: &[PreKeyRecord],
    signed: &SignedPreKeyRecord,
) -> Result<Node, PreKeyError> {
    let list = prekeys
        .iter()
        .map(|k| prekey_node(k.id, &k.key_pair.public))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(server_iq(
        "encrypt",
        "set",
        vec![
            Node::new("registration").with_bytes(registration_id.to_be_bytes().to_vec()),
            Node::new("type").with_bytes(vec![DJB_TYPE]),
            Node::new("identity").with_bytes(identity.as_bytes().to_vec()),
            Node::new("list").with_children(list),
            signed_prekey_node(signed)?,
        ],
    ))
}

/// The count query: `<iq xmlns="encrypt" type="get"><count/></iq>`.
pub fn count_iq() -> Node {
    server_iq("encrypt", "get", vec![Node::new("count")])
}

/// The number in a count response (`<iq type=result><count value=N/></iq>`) or in a
/// low-prekey notification (`<notification type=encrypt><count value=N/>`).
pub fn parse_count(node: &Node) -> Result<u32, PreKeyError> {
    node.child_by_tag("count")
        .and_then(|c| c.attr_str("value"))
        .and_then(|v| v.parse().ok())
        .ok_or(PreKeyError::MissingCount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::curve::KeyPair;
    use crate::signal::identity::generate_prekeys;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn upload_iq_layout() {
        let mut rng = StdRng::seed_from_u64(9);
        let identity = KeyPair::generate(&mut rng);
        let signed = SignedPreKeyRecord::generate(&identity, 1, 0, &mut rng);
        let keys = generate_prekeys(0x01_0203, 2, &mut rng);
        let iq = upload_iq(0x0A0B_0C0D, &identity.public, &keys, &signed).unwrap();
        assert_eq!(iq.attr_str("xmlns"), Some("encrypt"));
        assert_eq!(iq.attr_str("type"), Some("set"));
        let tags: Vec<&str> = iq.children().iter().map(|c| c.tag.as_ref()).collect();
        assert_eq!(tags, ["registration", "type", "identity", "list", "skey"]);
        assert_eq!(
            iq.child_by_tag("registration").unwrap().bytes(),
            Some(&[0x0A, 0x0B, 0x0C, 0x0D][..])
        );
        assert_eq!(iq.child_by_tag("type").unwrap().bytes(), Some(&[5][..]));
        let list = iq.child_by_tag("list").unwrap().children();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[1].child_by_tag("id").unwrap().bytes(),
            Some(&[0x01, 0x02, 0x04][..])
        );
        assert_eq!(
            list[1].child_by_tag("value").unwrap().bytes(),
            Some(&keys[1].key_pair.public.as_bytes()[..])
        );
        let skey = iq.child_by_tag("skey").unwrap();
        assert_eq!(
            skey.child_by_tag("id").unwrap().bytes(),
            Some(&[0, 0, 1][..])
        );
        assert_eq!(
            skey.child_by_tag("signature")
                .unwrap()
                .bytes()
                .map(<[u8]>::len),
            Some(64)
        );
        let big = PreKeyRecord {
            id: MAX_PREKEY_ID + 1,
            key_pair: KeyPair::generate(&mut rng),
        };
        assert_eq!(
            upload_iq(1, &identity.public, &[big], &signed),
            Err(PreKeyError::IdTooLarge(MAX_PREKEY_ID + 1))
        );
    }

    #[test]
    fn count_parsing() {
        let r = Node::new("iq").child(Node::new("count").attr("value", "17"));
        assert_eq!(parse_count(&r), Ok(17));
        assert_eq!(
            parse_count(&Node::new("iq")),
            Err(PreKeyError::MissingCount)
        );
        let bad = Node::new("iq").child(Node::new("count").attr("value", "-1"));
        assert_eq!(parse_count(&bad), Err(PreKeyError::MissingCount));
    }
}
