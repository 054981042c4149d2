//! `wif-emulator`: the local stand-in for the token endpoint and a minimal
//! Messages API, as a process (tests, the demo, trying anthropic-wif by hand).
//! Test tooling: the `anthropic-wif` release binary does not contain it.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(anthropic_wif_emulator::main_with_args(&args));
}
