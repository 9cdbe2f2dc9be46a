//! A real ClickHouse server for development and tests, made from `libchdb.so`.
//!
//! `libchdb.so` (npm package `@chdb/lib-linux-x64-gnu`) is ClickHouse built as a library. Its
//! exported `chdb_query_cmdline(argc, argv)` runs the `clickhouse-local` code path with the given
//! command line. Given a config file that sets `http_port`, `tcp_port` and `listen_host`, the
//! queries `SYSTEM START LISTEN HTTP` and `SYSTEM START LISTEN TCP` open the ClickHouse HTTP and
//! native servers; then a query that never ends (and costs next to no CPU) keeps the process,
//! and so the servers, alive. Stop it with SIGTERM or SIGKILL (`scripts/services down`).
//!
//! Usage:
//!
//! ```text
//! storeflow-chdb-server --lib /path/to/libchdb.so --config-file /run/clickhouse/config.xml \
//!     --path /run/clickhouse/data/ [--check] [-- --log-level=information ...]
//! ```
//!
//! `--check` runs `SELECT version()` instead of starting the servers, prints the result and
//! exits (handy to check a libchdb.so by hand).
//!
//! Needs libchdb 26.7 or newer: 26.5.x answers `SYSTEM START LISTEN query is not supported in
//! clickhouse-local (UNSUPPORTED_METHOD)`.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::PathBuf;
use std::process::ExitCode;

/// Opaque `chdb_result` from chdb.h.
#[repr(C)]
struct ChdbResult {
    _private: [u8; 0],
}

type QueryCmdline = unsafe extern "C" fn(argc: c_int, argv: *mut *mut c_char) -> *mut ChdbResult;
type ResultError = unsafe extern "C" fn(result: *mut ChdbResult) -> *const c_char;
type ResultBuffer = unsafe extern "C" fn(result: *mut ChdbResult) -> *mut c_char;
type ResultLength = unsafe extern "C" fn(result: *mut ChdbResult) -> usize;
type DestroyResult = unsafe extern "C" fn(result: *mut ChdbResult);

/// The query that opens the listeners and then never returns.
///
/// `sleepEachRow(1)` sleeps one second per row; `max_block_size = 1` makes `system.numbers`
/// hand out one row per block, so the pipeline wakes once a second instead of spinning, and the
/// `WHERE` keeps any row from reaching the (discarded) output. Measured: 0.25 s of CPU per
/// minute when idle (~0.4 %), ClickHouse's own background threads included.
/// `max_execution_time = 0` and `function_sleep_max_microseconds_per_block = 0` lift the limits
/// that would otherwise end it.
const SERVE_QUERY: &str = "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; \
     SELECT number FROM system.numbers WHERE sleepEachRow(1) != 0 \
     SETTINGS max_block_size = 1, max_execution_time = 0, \
     function_sleep_max_microseconds_per_block = 0, max_threads = 1";

struct Args {
    lib: PathBuf,
    config_file: PathBuf,
    path: PathBuf,
    check: bool,
    /// Extra clickhouse-local arguments (everything after `--`), e.g. `--log-level=warning`.
    extra: Vec<String>,
}

fn usage() -> String {
    "usage: storeflow-chdb-server --lib LIBCHDB_SO --config-file CONFIG_XML --path DATA_DIR [--check] \
     [-- EXTRA_CLICKHOUSE_LOCAL_ARGS...]"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut lib = None;
    let mut config_file = None;
    let mut path = None;
    let mut check = false;
    let mut extra = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .ok_or_else(|| format!("{name} needs a value\n{}", usage())),
            }
        };
        match key.as_str() {
            "--lib" => lib = Some(PathBuf::from(value("--lib")?)),
            "--config-file" => config_file = Some(PathBuf::from(value("--config-file")?)),
            "--path" => path = Some(PathBuf::from(value("--path")?)),
            "--check" => check = true,
            "--" => {
                extra.extend(it.by_ref());
                break;
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(Args {
        lib: lib.ok_or_else(usage)?,
        config_file: config_file.ok_or_else(usage)?,
        path: path.ok_or_else(usage)?,
        check,
        extra,
    })
}

fn run(args: &Args) -> Result<(), String> {
    // SAFETY: loading libchdb runs its static initialisers; it is a plain shared library.
    let lib = unsafe { libloading::Library::new(&args.lib) }
        .map_err(|e| format!("cannot load {}: {e}", args.lib.display()))?;
    let missing = |name: &str, e: libloading::Error| {
        format!("{}: symbol {name} missing: {e}", args.lib.display())
    };
    // SAFETY: the signatures match chdb.h of libchdb 26.x; `lib` outlives every use below.
    let (query_cmdline, result_error, result_buffer, result_length, destroy_result) = unsafe {
        (
            *lib.get::<QueryCmdline>(b"chdb_query_cmdline")
                .map_err(|e| missing("chdb_query_cmdline", e))?,
            *lib.get::<ResultError>(b"chdb_result_error")
                .map_err(|e| missing("chdb_result_error", e))?,
            *lib.get::<ResultBuffer>(b"chdb_result_buffer")
                .map_err(|e| missing("chdb_result_buffer", e))?,
            *lib.get::<ResultLength>(b"chdb_result_length")
                .map_err(|e| missing("chdb_result_length", e))?,
            *lib.get::<DestroyResult>(b"chdb_destroy_query_result")
                .map_err(|e| missing("chdb_destroy_query_result", e))?,
        )
    };

    let query = if args.check {
        "SELECT version()"
    } else {
        SERVE_QUERY
    };
    let mut argv_strings = vec![
        "clickhouse".to_string(),
        format!("--config-file={}", args.config_file.display()),
        format!("--path={}", args.path.display()),
    ];
    argv_strings.extend(args.extra.iter().cloned());
    argv_strings.extend([
        "--multiquery".to_string(),
        "--query".to_string(),
        query.to_string(),
    ]);
    let argv_owned: Vec<CString> = argv_strings
        .into_iter()
        .map(|s| CString::new(s).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*mut c_char> = argv_owned
        .iter()
        .map(|s| s.as_ptr() as *mut c_char)
        .collect();
    argv.push(std::ptr::null_mut());

    if !args.check {
        eprintln!(
            "storeflow-chdb-server: starting ClickHouse from {} (config {}, data {})",
            args.lib.display(),
            args.config_file.display(),
            args.path.display()
        );
    }
    // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call.
    let result = unsafe { query_cmdline((argv.len() - 1) as c_int, argv.as_mut_ptr()) };
    if result.is_null() {
        return Err("chdb_query_cmdline returned no result".to_string());
    }
    // SAFETY: result is a live chdb_result until destroyed below.
    let outcome = unsafe {
        let err = result_error(result);
        if !err.is_null() && *err != 0 {
            Err(format!(
                "ClickHouse: {}",
                CStr::from_ptr(err).to_string_lossy().trim_end()
            ))
        } else {
            let buf = result_buffer(result);
            let len = result_length(result);
            let out = if buf.is_null() || len == 0 {
                String::new()
            } else {
                String::from_utf8_lossy(std::slice::from_raw_parts(buf as *const u8, len))
                    .into_owned()
            };
            Ok(out)
        }
    };
    // SAFETY: destroyed exactly once.
    unsafe { destroy_result(result) };
    match outcome {
        Ok(out) if args.check => {
            print!("{out}");
            Ok(())
        }
        Ok(_) => Err("the serving query ended; the ClickHouse servers are gone".to_string()),
        Err(e) => Err(e),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storeflow-chdb-server: {e}");
            ExitCode::FAILURE
        }
    }
}
