//! One module per subcommand.

pub mod demo;
pub mod dlq;
pub mod groups;
pub mod log;
pub mod run;
pub mod schemas;
pub mod simulate;
pub mod sinks;
pub mod sql;
pub mod topics;
