//! Compiles every schema version kept in `avro/history/<Name>/v<N>.avsc` into the binary,
//! so the embedded registry knows the ids of old versions and can decode records written
//! by an older storeflow.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let history = root.join("history");
    println!("cargo:rerun-if-changed={}", history.display());
    let mut entries = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(&history) {
        for dir in dirs.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if !dir.path().is_dir() {
                continue;
            }
            println!("cargo:rerun-if-changed={}", dir.path().display());
            for file in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let fname = file.file_name().to_string_lossy().into_owned();
                let Some(v) = fname
                    .strip_prefix('v')
                    .and_then(|s| s.strip_suffix(".avsc"))
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                entries.push((name.clone(), v, file.path()));
            }
        }
    }
    entries.sort();
    let mut out = String::from(
        "/// Every frozen schema version: (record name, version, schema JSON).\n\
         pub static HISTORY: &[(&str, u32, &str)] = &[\n",
    );
    for (name, v, path) in entries {
        writeln!(out, "    ({name:?}, {v}, include_str!({:?})),", path.display().to_string())
            .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("history.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
