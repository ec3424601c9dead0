//! Events out: exactly once, in per-job order, across crashes and relay outages.
