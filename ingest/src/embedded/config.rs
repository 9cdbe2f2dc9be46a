//! Settings of the embedded log: [`EmbeddedConfig`] (`[log]` in `storeflow.toml`) and its
//! [`FsyncPolicy`].

use serde::{Deserialize, Serialize};

use crate::{LogError, Result};

/// When the embedded log calls `fsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Before acknowledging every append and commit: nothing acknowledged is lost even on
    /// power loss; throughput bounded by the disk's flush latency.
    Always,
    /// In the background every `fsync_interval_ms`: a process crash loses nothing
    /// acknowledged, power loss at most that window. The default.
    #[default]
    Interval,
    /// Never; the OS writes back when it likes (process crashes are still safe).
    Never,
}

/// Settings of the embedded log (`[log]` in `storeflow.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// A partition starts a new segment file past this many bytes.
    pub segment_bytes: u64,
    /// Delete whole segments whose newest record is older than this many hours (0: keep).
    pub retention_hours: u64,
    /// Delete the oldest segments of a partition past this many bytes (0: no limit).
    pub retention_bytes: u64,
    /// When to flush to disk.
    pub fsync: FsyncPolicy,
    /// Background flush period for `fsync = "interval"`.
    pub fsync_interval_ms: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            segment_bytes: 128 << 20,
            retention_hours: 24 * 7,
            retention_bytes: 0,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 200,
        }
    }
}

impl EmbeddedConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < 4096 {
            return Err(LogError::InvalidConfig("log.segment_bytes must be at least 4096".into()));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            return Err(LogError::InvalidConfig("log.fsync_interval_ms must be > 0 with fsync = \"interval\"".into()));
        }
        Ok(())
    }
}
