//! Sinks: see issue #7. Nothing here yet.
