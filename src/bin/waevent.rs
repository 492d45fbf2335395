//! The `waevent` command-line tool: a thin layer over the library.
//!
//! Errors are printed to stderr as one line and the process exits with code 2.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use waevent::wire::{self, MAX_INPUT_LEN, WireError};

#[cfg(feature = "sim")]
#[path = "waevent/demo.rs"]
mod demo;
#[path = "waevent/events.rs"]
mod events;
#[path = "waevent/pair.rs"]
mod pair;
#[cfg(feature = "gateway")]
#[path = "waevent/serve.rs"]
mod serve;
#[path = "waevent/session.rs"]
mod session;

/// waevent: WhatsApp event cards and RSVPs over the multi-device protocol.
#[derive(Parser)]
#[command(name = "waevent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    session: session::SessionOpts,
}

#[derive(Subcommand)]
enum Command {
    /// Offline tools for WhatsApp's wire formats (read stdin, write stdout).
    #[command(subcommand)]
    Wire(WireCommand),
    /// Link this machine as a WhatsApp device: shows a QR code to scan with the phone
    /// (or, with --phone, a code to type on it), then stores the session (--store).
    Pair(pair::PairArgs),
    /// Send an event card to a group or user.
    SendEvent(events::SendEventArgs),
    /// Answer an event (an encrypted RSVP).
    Respond(events::RespondArgs),
    /// Replace an event you created by a new card (fields left out are removed).
    EditEvent(events::EditEventArgs),
    /// Cancel an event you created.
    CancelEvent(events::CancelEventArgs),
    /// Print incoming event cards, RSVPs, edits and cancellations (with --json: one
    /// JSON object per line, {"type","data"} as the gateway's webhooks).
    #[cfg(feature = "gateway")]
    Listen(events::ListenArgs),
    /// The latest answer of every voter of an event and the totals.
    Tally(events::TallyArgs),
    /// Run the HTTP gateway (Z-API and RyzeAPI compatible routes, signed webhooks,
    /// WebSocket event stream) configured by a TOML file (see examples/gateway.toml),
    /// or with --sim against an in-process simulator.
    #[cfg(feature = "gateway")]
    Serve(serve::ServeArgs),
    /// Show the whole thing without a WhatsApp account: an in-process simulator, a
    /// device paired by QR, a group of simulated members, an event card, random RSVPs
    /// and the tally. Exits 0 only if every device decrypted the card and the tally
    /// matches what the members sent.
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
enum WireCommand {
    /// Event card JSON (name, description, startAt, endAt, location{name,address,
    /// latitude,longitude}, joinLink, isScheduleCall, hasReminder, reminderOffsetSec,
    /// extraGuestsAllowed, isCanceled) → base64 of the E2E Message.
    Event,
    /// Base64 of an E2E Message → the message as JSON.
    Decode,
    /// Hex of a binary node frame (flags byte first) → JSON {"tag", "attrs",
    /// "content": null | "<hex>" | [children]}.
    NodeDecode,
    /// The JSON of node-decode → hex of the frame (flags byte 0x00 first).
    NodeEncode,
}

/// Reads all of stdin, refusing more than [`MAX_INPUT_LEN`] bytes.
fn read_stdin() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_INPUT_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if buf.len() > MAX_INPUT_LEN {
        return Err(WireError::InputTooLarge { max: MAX_INPUT_LEN }.to_string());
    }
    Ok(buf)
}

fn run_wire(cmd: WireCommand) -> Result<String, String> {
    let raw = read_stdin()?;
    let out = match cmd {
        WireCommand::Event => {
            let text = wire::input_text(&raw, "event card JSON").map_err(|e| e.to_string())?;
            wire::event_json_to_base64(text, &mut rand::rngs::OsRng)
        }
        WireCommand::Decode => {
            let text = wire::input_text(&raw, "base64 of a Message").map_err(|e| e.to_string())?;
            wire::message_base64_to_json(text)
        }
        WireCommand::NodeDecode => {
            let text = wire::input_text(&raw, "hex of a binary node").map_err(|e| e.to_string())?;
            wire::node_hex_to_json(text)
        }
        WireCommand::NodeEncode => {
            let text = wire::input_text(&raw, "node JSON").map_err(|e| e.to_string())?;
            wire::node_json_to_hex(text)
        }
    };
    out.map_err(|e| e.to_string())
}

/// Resolves on Ctrl-C or SIGTERM.
#[cfg(feature = "gateway")]
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// One line, whatever the error text holds.
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs a command that talks to a server on a tokio runtime; errors are reported
/// (as text or JSON) here.
fn run_online<F>(opts: &session::SessionOpts, work: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let out = session::Output { json: opts.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            out.error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            out.error(&msg);
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Wire(cmd) => run_wire(cmd),
        Command::Pair(args) => {
            let opts = cli.session.clone();
            return run_online(&cli.session, async move { pair::run(args, &opts).await });
        }
        Command::SendEvent(args) => {
            let opts = cli.session.clone();
            return run_online(&cli.session, async move {
                events::send_event(args, &opts).await
            });
        }
        Command::Respond(args) => {
            let opts = cli.session.clone();
            return run_online(
                &cli.session,
                async move { events::respond(args, &opts).await },
            );
        }
        Command::EditEvent(args) => {
            let opts = cli.session.clone();
            return run_online(&cli.session, async move {
                events::edit_event(args, &opts).await
            });
        }
        Command::CancelEvent(args) => {
            let opts = cli.session.clone();
            return run_online(&cli.session, async move {
                events::cancel_event(args, &opts).await
            });
        }
        #[cfg(feature = "gateway")]
        Command::Listen(args) => {
            let opts = cli.session.clone();
            return run_online(
                &cli.session,
                async move { events::listen(args, &opts).await },
            );
        }
        Command::Tally(args) => {
            let opts = cli.session.clone();
            return run_online(
                &cli.session,
                async move { events::tally(args, &opts).await },
            );
        }
        #[cfg(feature = "gateway")]
        Command::Serve(args) => {
            let opts = cli.session.clone();
            return run_online(&cli.session, async move { serve::run(args, &opts).await });
        }
        #[cfg(feature = "sim")]
        Command::Demo(args) => {
            let opts = cli.session.clone();
            return run_online(&cli.session, async move { demo::run(args, &opts).await });
        }
    };
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed stdout (e.g. piped into `head`) is not worth a panic.
            if writeln!(stdout, "{out}")
                .and_then(|_| stdout.flush())
                .is_err()
            {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("waevent: {}", one_line(&msg));
            ExitCode::from(2)
        }
    }
}
