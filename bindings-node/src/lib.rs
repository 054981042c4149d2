//! napi glue (issue 4).
