//! `waevent pair`: links this machine as a WhatsApp device (QR code or phone-number
//! code), stores the session and exits once it has logged in with it.

use std::time::Duration;

use clap::Args;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use serde_json::json;
use waevent::client::{Client, DisconnectReason, Event};

use super::session::{Output, SessionOpts};

/// How long to wait for the login that follows the pairing (515 restart) and the
/// prekey upload before leaving the rest to the next start.
const AFTER_PAIR_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `waevent pair`.
#[derive(Args, Debug, Clone)]
pub struct PairArgs {
    /// Pair with an 8-character code typed on the phone instead of a QR code: the
    /// account's phone number in international form (e.g. +55 11 99999-9999).
    #[arg(long, value_name = "NUMBER")]
    pub phone: Option<String>,
}

/// Runs the pairing; returns the process exit code.
pub async fn run(args: PairArgs, opts: &SessionOpts) -> Result<(), String> {
    let out = Output { json: opts.json };
    let config = opts.client_config()?;
    let (store, path) = opts.open_store().await?;
    if let Some(creds) = store
        .load_credentials()
        .await
        .map_err(|e| format!("cannot read the store {}: {e}", path.display()))?
        && let Some(jid) = &creds.pn
    {
        let lid = creds.lid.as_ref().map(ToString::to_string);
        out.text(&format!(
            "Already paired as {jid} (store {}). Use another --store to pair another device.",
            path.display()
        ));
        if out.json {
            out.json_line(
                &json!({"event": "paired", "jid": jid.to_string(), "lid": lid, "already": true}),
            );
        }
        return Ok(());
    }

    let (client, mut events) = Client::new(store, config);
    client.connect().await.map_err(|e| e.to_string())?;
    let result = tokio::select! {
        r = drive(&client, &mut events, &args, out) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    client.disconnect().await;
    if result.is_ok() {
        out.text(&format!("Session stored in {}.", path.display()));
    }
    result
}

/// Reacts to the client's events until the device is paired and logged in.
async fn drive(
    client: &Client,
    events: &mut waevent::client::Events,
    args: &PairArgs,
    out: Output,
) -> Result<(), String> {
    let mut code_requested = false;
    let mut paired = false;
    let mut after_pair_deadline = None;
    loop {
        let next = match after_pair_deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(e) => e,
                // Paired and stored; the login will finish on the next start.
                Err(_) => return Ok(()),
            },
            None => events.recv().await,
        };
        let Some(event) = next else {
            return Err("the client stopped unexpectedly".into());
        };
        match event {
            Event::PairingQr { code, timeout } => {
                if let Some(phone) = &args.phone {
                    if !code_requested {
                        code_requested = true;
                        let code = client.pair_phone(phone).await.map_err(|e| e.to_string())?;
                        show_pair_code(&code, out);
                    }
                } else {
                    show_qr(&code, timeout, out)?;
                }
            }
            Event::PairingCode { .. } => {} // shown when pair_phone returned it
            Event::PairSuccess {
                jid,
                lid,
                platform,
                business_name,
            } => {
                paired = true;
                after_pair_deadline = Some(tokio::time::Instant::now() + AFTER_PAIR_TIMEOUT);
                let lid = lid.map(|l| l.to_string());
                if out.json {
                    out.json_line(&json!({
                        "event": "paired", "jid": jid.to_string(), "lid": lid,
                        "platform": platform, "business_name": business_name,
                    }));
                } else {
                    out.text(&format!(
                        "Paired as {jid}{} (phone: {platform}).",
                        lid.map(|l| format!(" / {l}")).unwrap_or_default()
                    ));
                }
            }
            Event::Connected if paired => {
                out.text("Logged in; uploading prekeys…");
                if out.json {
                    out.json_line(&json!({"event": "connected"}));
                }
            }
            Event::PreKeysUploaded { count } if paired => {
                if out.json {
                    out.json_line(&json!({"event": "prekeys_uploaded", "count": count}));
                }
                return Ok(());
            }
            Event::PairError { message } => return Err(format!("pairing failed: {message}")),
            Event::PairingTimeout => {
                return Err(if args.phone.is_some() {
                    "pairing timed out: the code was not entered on the phone in time".into()
                } else {
                    "pairing timed out: no QR code was scanned in time".into()
                });
            }
            Event::LoggedOut { reason } => return Err(format!("logged out: {reason}")),
            Event::Disconnected {
                reason,
                will_reconnect: false,
            } => {
                if paired && reason == DisconnectReason::Requested {
                    return Ok(());
                }
                return Err(format!("disconnected: {reason}"));
            }
            Event::Disconnected {
                reason,
                will_reconnect: true,
            } if !out.json => {
                eprintln!("waevent: connection lost ({reason}); reconnecting…");
            }
            _ => {}
        }
    }
}

/// Prints the QR (unicode half blocks) or its JSON line.
fn show_qr(code: &str, timeout: Duration, out: Output) -> Result<(), String> {
    if out.json {
        out.json_line(&json!({"event": "qr", "code": code, "timeout_secs": timeout.as_secs()}));
        return Ok(());
    }
    let qr = QrCode::new(code.as_bytes()).map_err(|e| format!("cannot render the QR code: {e}"))?;
    let image = qr
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    out.text(&image);
    out.text(&format!(
        "Scan with WhatsApp on your phone: Settings → Linked devices → Link a device \
         (valid {} s).",
        timeout.as_secs()
    ));
    Ok(())
}

fn show_pair_code(code: &str, out: Output) {
    if out.json {
        out.json_line(&json!({"event": "pair_code", "code": code}));
    } else {
        out.text(&format!(
            "On your phone: WhatsApp → Settings → Linked devices → Link a device → Link with \
             phone number instead, and enter:\n\n    {code}\n"
        ));
    }
}
