//! Profile files: `<config_dir>/configs/<profile>.json` (SPEC §3).
