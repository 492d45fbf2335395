//! The `waevent` command-line tool: a thin layer over the library.

fn main() {
    eprintln!("waevent: no commands yet");
    std::process::exit(2);
}
