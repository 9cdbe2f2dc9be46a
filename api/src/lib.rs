//! The HTTP API: see issue #8. Nothing here yet.
