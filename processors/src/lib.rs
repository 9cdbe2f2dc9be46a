//! Processors: see issue #4 (runtime) and #5/#6 (domain processors). Nothing here yet.
