//! State: partition-local key-value state, written through a changelog — the backends
//! ([`backend`]), how keys and values are laid out in them ([`encoding`]), a task's layers of
//! uncommitted writes over its backend ([`task_state`]), typed stores with expiry
//! ([`store`]) and timers ([`timers`]).

pub mod backend;
pub mod encoding;
pub mod store;
pub mod task_state;
pub mod timers;

pub use backend::{Changes, KvBackend, MemBackend, RedbBackend};
pub use encoding::{decode_value, encode_value, expiry_of, full_key, split_key};
pub use store::Store;
pub use task_state::TaskState;
pub use timers::Timer;
