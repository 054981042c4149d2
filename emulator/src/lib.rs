//! The local token-endpoint emulator.
