//! One module per subcommand.

pub mod demo;
pub mod dlq;
pub mod log;
pub mod run;
pub mod schemas;
pub mod simulate;
pub mod sql;
pub mod topics;
