//! Entry points for the `gateway_request` fuzz target: the request parsers of both
//! APIs on arbitrary bytes. They must return (with a value or an error), never panic.

use super::{ryze, zapi};

/// Runs every request parser on `data`: the first byte picks the route, the rest is
/// the body; the Z-API time helpers also get the body as text.
pub fn requests(data: &[u8]) {
    let (selector, body) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, data),
    };
    let route = match selector % 4 {
        0 => Some(zapi::ZapiRoute::SendEvent),
        1 => Some(zapi::ZapiRoute::SendEditEvent),
        2 => Some(zapi::ZapiRoute::SendEventResponse),
        _ => None,
    };
    match route {
        Some(route) => {
            let _ = zapi::parse_request(route, body);
        }
        None => {
            let _ = ryze::parse_request(body);
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let (date, zone) = text.split_once('|').unwrap_or((text, ""));
        let _ = zapi::parse_time_zone(zone);
        let _ = zapi::resolve_date_time(date, Some(zone));
        let _ = zapi::resolve_date_time(date, None);
    }
}
