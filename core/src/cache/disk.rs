//! The on-disk token cache the SDKs share (SPEC §4) and its `<file>.lock`.
