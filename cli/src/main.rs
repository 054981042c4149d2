fn main() {
    eprintln!("anthropic-wif: not built yet");
    std::process::exit(1);
}
