//! PyO3 glue (issue 3).
