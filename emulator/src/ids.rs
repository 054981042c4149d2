//! Id shapes the token endpoint checks (the emulator's own, deliberately
//! independent of the client's validation in core).

/// `prefix` followed by 1–64 characters of `[A-Za-z0-9]`, e.g. `fdrl_01SDCCSbTxrXDpWc1phhtcfK`.
pub fn is_tagged(s: &str, prefix: &str) -> bool {
    match s.strip_prefix(prefix) {
        Some(rest) => (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()),
        None => false,
    }
}

/// A canonical 8-4-4-4-12 hexadecimal UUID (either case).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_tagged("fdrl_01SDCCSbTxrXDpWc1phhtcfK", "fdrl_"));
        assert!(!is_tagged("fdrl_", "fdrl_"));
        assert!(!is_tagged("fdrl_abc-def", "fdrl_"));
        assert!(!is_tagged("svac_abc", "fdrl_"));
        assert!(!is_tagged(&format!("fdrl_{}", "a".repeat(65)), "fdrl_"));
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_uuid("123E4567-E89B-12D3-A456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
        assert!(!is_uuid("org_123"));
    }
}
