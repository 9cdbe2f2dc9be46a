//! Helpers the binary's integration tests share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Copies the directory tree `from` to `to` (a data directory, to run twice over one log).
#[allow(dead_code)] // not every test binary copies
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// One HTTP/1.1 request over a plain socket; returns the status code and the body.
#[allow(dead_code)] // not every test binary sends requests
pub fn http(port: u16, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// `storeflow` in `dir`, with a clean environment and a bounded replay
/// (`runtime.idle = "end_of_input"`: once every source is idle, every timer fires).
#[allow(dead_code)]
pub fn storeflow(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_storeflow"));
    c.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("STOREFLOW__RUNTIME__IDLE", "end_of_input");
    c
}

/// Prints a line of the fault suite's counts (kills landed, invariants checked, requests
/// fuzzed) for `scripts/test` to print after the tests.
#[allow(dead_code)]
pub fn report(line: &str) {
    storeflow_processors::testing::report_fault(Path::new(env!("CARGO_TARGET_TMPDIR")), line);
}

/// A free TCP port on 127.0.0.1.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The sum of every sample of `metric` on `/metrics`, if the API answers.
#[allow(dead_code)]
pub fn metric(port: u16, metric: &str) -> Option<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let samples: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(metric) && (l[metric.len()..].starts_with('{') || l[metric.len()..].starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// A `storeflow run` the test watches through `/metrics`.
#[allow(dead_code)]
pub struct Run {
    /// The process.
    pub child: Child,
    /// Its API port.
    pub port: u16,
}

/// A run the test did not stop (it failed on the way) dies with it.
impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(dead_code)]
impl Run {
    pub fn start(dir: &Path) -> Run {
        Run::start_with(dir, &[])
    }

    /// [`Run::start`] with settings in the environment (`STOREFLOW__…`); its stderr goes to
    /// `run-<port>.log` in `dir`.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Run {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("run-{port}.log"))).unwrap();
        let child = storeflow(dir)
            .envs(env.iter().copied())
            .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--registry-listen", ""])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start storeflow run");
        Run { child, port }
    }

    /// Records handled so far, and whether everything has been processed and written (no
    /// lag, nothing buffered, in the processors and the sinks).
    pub fn state(&self) -> Option<(f64, bool)> {
        // Outputs count too: at the end of input timers fire (windows, sessions) with no
        // record coming in.
        let handled = metric(self.port, "storeflow_processor_records_in_total")? + metric(self.port, "storeflow_processor_records_out_total").unwrap_or(0.0);
        let lag = metric(self.port, "storeflow_processor_lag")? + metric(self.port, "storeflow_processor_buffered").unwrap_or(0.0);
        let sink_lag = metric(self.port, "storeflow_sink_lag").unwrap_or(0.0);
        Some((handled, lag == 0.0 && sink_lag == 0.0))
    }

    /// Runs until the pipeline has been idle (everything processed and written, nothing
    /// changing) for a few seconds, then kills it.
    pub fn until_idle(mut self) {
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut last = (-1.0, Instant::now());
        loop {
            assert!(Instant::now() < deadline, "storeflow run did not go idle in 900 s");
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("storeflow run exited early: {status}");
            }
            if let Some((handled, done)) = self.state() {
                if handled != last.0 || !done {
                    last = (handled, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(4) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Watches it for `after`: whether it was still working (records handled, not all
    /// processed and written) at the end.
    pub fn working_after(&self, after: Duration) -> bool {
        let started = Instant::now();
        let mut mid = false;
        while started.elapsed() < after {
            if let Some((handled, done)) = self.state() {
                mid = handled > 0.0 && !done;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        mid
    }

    /// Sends SIGTERM after `after`; asserts it exits 0 within the grace period (30 s by
    /// default); returns whether the stop landed mid-stream.
    pub fn terminate_mid_stream(mut self, after: Duration) -> bool {
        let mid = self.working_after(after);
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let asked = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "storeflow run exited {status} after SIGTERM");
                break;
            }
            assert!(asked.elapsed() < Duration::from_secs(30), "storeflow run did not stop within the 30 s grace period after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("SIGTERM: stopped in {:?}", asked.elapsed());
        mid
    }

    /// Waits (up to 120 s) until this process is processing — it has handled records and
    /// work is left — then lets it work `more` and kills it with SIGKILL. Whether the kill
    /// landed mid-stream: still working at that moment. `false` when the work ran out first.
    #[allow(dead_code)]
    pub fn kill_once_working(mut self, more: Duration) -> bool {
        let started = Instant::now();
        let working = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("storeflow run exited early: {status}");
            }
            match self.state() {
                Some((handled, done)) if handled > 0.0 && !done => break true,
                // Idle for 10 s after its start: nothing is left to do.
                Some((_, true)) if started.elapsed() > Duration::from_secs(10) => break false,
                _ => {}
            }
            assert!(started.elapsed() < Duration::from_secs(120), "storeflow run did not start processing in 120 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mid = working && self.working_after(more);
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        mid
    }

    /// Kills it with SIGKILL after `after`, asserting it was in the middle of its work.
    pub fn kill_mid_stream(mut self, after: Duration) -> bool {
        let mid = self.working_after(after);
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        mid
    }
}


/// The tests' Python venv (made, or found, by `tests/clients/venv`: the pinned confluent-kafka,
/// jsonschema and PyYAML), its python's path. `None` (the caller skips, saying `purpose`)
/// only without python3 outside CI; a venv that fails to build fails the test.
#[allow(dead_code)]
pub fn venv_python(purpose: &str) -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/venv");
    match Command::new(venv).stderr(Stdio::inherit()).output() {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) if ci || Command::new("python3").arg("--version").output().is_ok_and(|v| v.status.success()) => {
            panic!("tests/clients/venv failed ({}): see its output above", o.status)
        }
        Err(e) if ci => panic!("running tests/clients/venv: {e}"),
        _ => {
            eprintln!("SKIPPED: no python3 here to {purpose} (tests/clients/venv)");
            None
        }
    }
}
