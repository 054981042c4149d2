//! Standalone `wif-emulator` binary: the same as `anthropic-wif emulator`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(anthropic_wif_emulator::main_with_args(&args));
}
