//! Decoding a JWT without verifying it: for diagnostics (doctor) and for
//! reading `exp`. Never returns or logs the signature or the raw token.
