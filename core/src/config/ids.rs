//! Validation of the ids the exchange sends, so a typo fails before the network.
