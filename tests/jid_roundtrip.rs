//! Property tests of JID text: every JID the protocol uses prints as text that parses
//! back to the same JID, and no input makes the parsers panic.

use proptest::prelude::*;
use waevent::jid::{Jid, JidError};

fn digits(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[1-9][0-9]{{{},{}}}", min - 1, max - 1)).unwrap()
}

/// JIDs of every server, with devices (and agents where the text form has them).
fn any_jid() -> impl Strategy<Value = Jid> {
    let device = prop_oneof![Just(0u16), 1u16..=99, any::<u16>()];
    let agent = prop_oneof![3 => Just(0u8), 1 => any::<u8>()];
    prop_oneof![
        (
            digits(7, 15),
            agent.clone(),
            device.clone(),
            prop::sample::select(vec!["s.whatsapp.net", "lid"])
        )
            .prop_map(|(u, a, d, s)| Jid {
                agent: a,
                ..Jid::new_ad(u, d, s)
            }),
        (
            digits(7, 15),
            device.clone(),
            prop::sample::select(vec!["hosted", "hosted.lid", "msgr", "interop", "bot"])
        )
            .prop_map(|(u, d, s)| Jid::new_ad(u, d, s)),
        digits(18, 18).prop_map(Jid::group),
        (digits(10, 13), digits(10, 10)).prop_map(|(a, b)| Jid::group(format!("{a}-{b}"))),
        prop_oneof![Just("status".to_string()), digits(10, 13)]
            .prop_map(|u| Jid::new(u, "broadcast")),
        digits(15, 18).prop_map(|u| Jid::new(u, "newsletter")),
        digits(5, 8).prop_map(|u| Jid::new(u, "call")),
        prop::sample::select(waevent::jid::KNOWN_SERVERS.to_vec()).prop_map(|s| Jid::new("", s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn text_round_trip(jid in any_jid()) {
        let text = jid.to_string();
        prop_assert_eq!(Jid::parse(&text), Ok(jid.clone()), "{}", text);
        let json = serde_json::to_string(&jid).unwrap();
        prop_assert_eq!(serde_json::from_str::<Jid>(&json).unwrap(), jid);
    }

    #[test]
    fn c_us_is_the_phone_number_server(user in digits(7, 15), device in 0u16..100) {
        let jid = Jid::new_ad(user.clone(), device, "c.us");
        let parsed = Jid::parse(&jid.to_string()).unwrap();
        prop_assert_eq!(parsed, Jid::new_ad(user, device, "s.whatsapp.net"));
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,80}|[0-9a-z.:_@+() -]{0,40}") {
        let _ = Jid::parse(&text);
        match Jid::parse_recipient(&text) {
            Ok(jid) => prop_assert!(jid.is_pn() || jid.is_lid() || jid.is_group()),
            Err(JidError::InvalidPhoneNumber(_)) => {}
            Err(other) => prop_assert!(false, "parse_recipient gave {:?}", other),
        }
    }

    #[test]
    fn formatted_phone_numbers_are_recipients(
        number in "[1-9][0-9]{6,14}",
        seps in prop::collection::vec(prop::sample::select(vec!["", " ", "-", "(", ")", "."]), 15),
        plus in any::<bool>(),
    ) {
        let mut text = String::from(if plus { "+" } else { "" });
        for (c, sep) in number.chars().zip(&seps) {
            text.push(c);
            text.push_str(sep);
        }
        let text = text.trim().to_string();
        prop_assert_eq!(Jid::parse_recipient(&text).unwrap(), Jid::pn_user(number));
    }
}
