//! No source file of any crate in the workspace imports a file that imports it back,
//! directly or through a chain of other files.
//!
//! For every member of the workspace (`members` in the root `Cargo.toml`) the check starts
//! at each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`, `src/bin/*/main.rs`),
//! follows `mod x;` declarations to the module files, and draws an edge from a file to the
//! file that defines what it names through `crate::`, `super::` or `self::`, or through a
//! child module's name (`align::Step` in a file that declares `mod align;`) — in `use`
//! declarations and inline paths alike. A path goes to the longest module that has a file
//! (`crate::a::b::C` → `a/b.rs` or `a/b/mod.rs` if `b` is a module file, else `a.rs`, else the
//! crate root); a name the file it lands in only re-exports (`pub use ctx::Ctx;` in lib.rs)
//! is followed to the file it comes from. The crate root's own re-exports are its table of
//! contents, like its `mod` declarations, and no import of its own; a re-export in any
//! other file is an import of the file it re-exports from. An inline module
//! (`#[cfg(test)] mod tests { … }`) is part of its file: its `use super::*` is the file
//! naming itself.
//!
//! Limits, because it scans tokens and does not resolve names as the compiler does:
//! `#[path]` attributes, macros that expand to paths (`$crate::…` is skipped), glob
//! re-exports (`pub use a::*`, which it leaves on the file that has them) and names
//! brought in by a glob import are not followed; a path through a `use` alias
//! (`use crate::runtime::align;` then `align::…`) counts once, at the `use`; a method call
//! needs no path, so calling a method that another file's `impl` block defines is not seen
//! as depending on that file. For each edge that lies on a cycle it reports the shortest
//! cycle through that edge, so a knot of files shows up as the few chains that make it, not
//! every possible loop.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// A token of Rust source, comments and literals removed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    /// Any other punctuation character.
    Punct(char),
}

fn tokens(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
            let (hashes, body) = raw_string_start(&chars, i).expect("checked");
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            i = body;
            while i < chars.len() && !chars[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
        } else if c == 'b' && next == Some('"') {
            i = skip_string(&chars, i + 2);
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or a lifetime ('a), which is skipped too.
            if next == Some('\\') {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && next == Some(':') {
            out.push(Tok::Path);
            i += 2;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// The index after the closing quote of a string whose body starts at `i`.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// For `r"`, `r#"`, `br"`…: the number of `#` and where the body starts.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// A path as written, with the module it was written in.
struct Written {
    /// The module (file module plus inline modules) the path appears in.
    scope: Vec<String>,
    segments: Vec<String>,
}

/// What one file declares and names.
#[derive(Default)]
struct Scan {
    /// `mod x;` declarations: (inline modules around it, name).
    children: Vec<(Vec<String>, String)>,
    /// Inline modules (`mod x { … }`), as paths relative to the file's module.
    inline: BTreeSet<Vec<String>>,
    /// Names bound by `use` at the file's top level, with the path they stand for.
    aliases: Vec<(String, Written)>,
    /// Every path the file names.
    paths: Vec<Written>,
}

fn ident(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

/// Expands a use tree starting at `toks[i]` with `prefix`; returns (full path, bound name)
/// pairs and the index after the tree.
fn use_tree(toks: &[Tok], mut i: usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) -> usize {
    let mut path = prefix;
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) if s == "as" => {
                let name = ident(toks.get(i + 1)).map(str::to_string);
                out.push((path, name));
                return i + 2;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
                if toks.get(i) == Some(&Tok::Path) {
                    i += 1;
                    continue;
                }
                if toks.get(i) == Some(&Tok::Ident("as".into())) {
                    continue;
                }
                let name = path.last().cloned();
                // `a::{self}` binds `a`.
                if path.last().is_some_and(|l| l == "self") {
                    path.pop();
                    let name = path.last().cloned();
                    out.push((path, name));
                } else {
                    out.push((path, name));
                }
                return i;
            }
            Some(Tok::Punct('*')) => {
                out.push((path, None));
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => i = use_tree(toks, i, path.clone(), out),
                    }
                }
            }
            _ => {
                out.push((path, None));
                return i;
            }
        }
    }
}

/// True when the `use` at `toks[i]` is a re-export (`pub use`, `pub(crate) use`, …).
fn reexport(toks: &[Tok], i: usize) -> bool {
    match toks[..i].last() {
        Some(Tok::Ident(w)) => w == "pub",
        Some(Tok::Punct(')')) => {
            let open = toks[..i].iter().rposition(|t| *t == Tok::Punct('('));
            open.is_some_and(|o| o > 0 && toks[o - 1] == Tok::Ident("pub".into()))
        }
        _ => false,
    }
}

fn scan(src: &str, root: bool) -> Scan {
    let toks = tokens(src);
    let mut s = Scan::default();
    // Inline modules open at each brace depth: (depth inside, name).
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let scope = |inline: &Vec<(usize, String)>| -> Vec<String> { inline.iter().map(|(_, n)| n.clone()).collect() };
    while i < toks.len() {
        match &toks[i] {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(d, _)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Punct('$') => i += 2, // `$crate::…` in a macro: not a path of this file
            Tok::Ident(w) if w == "mod" => {
                let Some(name) = ident(toks.get(i + 1)).map(str::to_string) else {
                    i += 1;
                    continue;
                };
                match toks.get(i + 2) {
                    Some(Tok::Punct(';')) => s.children.push((scope(&inline), name)),
                    Some(Tok::Punct('{')) => {
                        depth += 1;
                        inline.push((depth, name));
                        s.inline.insert(scope(&inline));
                    }
                    _ => {}
                }
                i += 3;
            }
            Tok::Ident(w) if w == "use" => {
                let mut trees = Vec::new();
                let mut j = use_tree(&toks, i + 1, Vec::new(), &mut trees);
                while j < toks.len() && toks[j] != Tok::Punct(';') {
                    j += 1;
                }
                let export = root && reexport(&toks, i);
                for (path, name) in trees {
                    if let (Some(name), true) = (name, inline.is_empty()) {
                        s.aliases.push((name, Written { scope: Vec::new(), segments: path.clone() }));
                    }
                    if !export {
                        s.paths.push(Written { scope: scope(&inline), segments: path });
                    }
                }
                i = j + 1;
            }
            Tok::Ident(_) if toks.get(i + 1) == Some(&Tok::Path) && (i == 0 || toks[i - 1] != Tok::Path) => {
                let mut segments = Vec::new();
                let mut j = i;
                while let Some(seg) = ident(toks.get(j)) {
                    segments.push(seg.to_string());
                    if toks.get(j + 1) != Some(&Tok::Path) {
                        break;
                    }
                    j += 2;
                }
                s.paths.push(Written { scope: scope(&inline), segments });
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    s
}

/// One crate (one root file and the module files under it).
struct Crate {
    /// Shown before its cycles.
    label: String,
    /// Where paths are shown from.
    src: PathBuf,
    /// Module path → file.
    files: BTreeMap<Vec<String>, PathBuf>,
    scans: HashMap<PathBuf, Scan>,
    /// File → its module path.
    modules: HashMap<PathBuf, Vec<String>>,
}

fn load(label: String, src: &Path, root: &Path) -> Crate {
    let mut c = Crate { label, src: src.to_path_buf(), files: BTreeMap::new(), scans: HashMap::new(), modules: HashMap::new() };
    let mut queue = VecDeque::from([(Vec::new(), root.to_path_buf(), root.parent().expect("in src").to_path_buf())]);
    while let Some((module, file, dir)) = queue.pop_front() {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let scan = scan(&text, module.is_empty());
        for (within, name) in &scan.children {
            let base = within.iter().fold(dir.clone(), |d, m| d.join(m));
            let flat = base.join(format!("{name}.rs"));
            let nested = base.join(name).join("mod.rs");
            let mut child = module.clone();
            child.extend(within.iter().cloned());
            child.push(name.clone());
            if flat.exists() {
                queue.push_back((child, flat, base.join(name)));
            } else if nested.exists() {
                queue.push_back((child, nested, base.join(name)));
            }
        }
        c.files.insert(module.clone(), file.clone());
        c.modules.insert(file.clone(), module);
        c.scans.insert(file, scan);
    }
    c
}

impl Crate {
    /// The file module a module path lies in (the longest prefix with a file).
    fn file_of(&self, path: &[String]) -> (&PathBuf, usize) {
        (0..=path.len()).rev().find_map(|n| self.files.get(&path[..n]).map(|f| (f, n))).expect("the root has a file")
    }

    /// Makes a written path absolute (from the crate root); `None` for another crate's.
    fn absolute(&self, file: &Path, w: &Written) -> Option<Vec<String>> {
        let module = &self.modules[file];
        let mut here: Vec<String> = module.iter().chain(&w.scope).cloned().collect();
        let mut segs = w.segments.iter().peekable();
        match segs.peek().map(|s| s.as_str()) {
            Some("crate") => {
                segs.next();
                here.clear();
            }
            Some("super") => {
                while segs.peek().is_some_and(|s| *s == "super") {
                    segs.next();
                    here.pop();
                }
            }
            Some("self") => {
                segs.next();
            }
            Some(first) => {
                // A child module of the scope it is written in, or nothing of this crate.
                let scan = &self.scans[file];
                let mut child = w.scope.clone();
                child.push(first.to_string());
                let declared = scan.children.iter().any(|(within, n)| *within == w.scope && n == first) || scan.inline.contains(&child);
                if !declared {
                    return None;
                }
            }
            None => return None,
        }
        here.extend(segs.cloned());
        Some(here)
    }

    /// The file that defines what `path` (absolute) names, following re-exports.
    fn resolve(&self, path: &[String], hops: usize) -> Option<PathBuf> {
        let (file, n) = self.file_of(path);
        if hops < 8
            && let Some(item) = path.get(n)
        {
            if let Some((_, a)) = self.scans[file].aliases.iter().find(|(name, _)| name == item) {
                let mut target = self.absolute(file, a)?;
                target.extend(path[n + 1..].iter().cloned());
                return self.resolve(&target, hops + 1);
            }
        }
        Some(file.clone())
    }

    fn edges(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for (file, scan) in &self.scans {
            let out = edges.entry(file.clone()).or_default();
            for w in &scan.paths {
                let Some(abs) = self.absolute(file, w) else { continue };
                if let Some(to) = self.resolve(&abs, 0)
                    && &to != file
                {
                    out.insert(to);
                }
            }
        }
        edges
    }

    fn show(&self, f: &Path) -> String {
        f.strip_prefix(&self.src).unwrap_or(f).display().to_string()
    }
}

/// For every edge on a cycle, the shortest cycle through it, each once (rotated to start at
/// its least file).
fn cycles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> BTreeSet<Vec<PathBuf>> {
    let shortest = |from: &PathBuf, to: &PathBuf| -> Option<Vec<PathBuf>> {
        let mut prev: HashMap<&PathBuf, &PathBuf> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            if at == to {
                let mut path = vec![to.clone()];
                let mut cur = to;
                while cur != from {
                    cur = prev[cur];
                    path.push(cur.clone());
                }
                path.reverse();
                return Some(path);
            }
            for next in edges.get(at).into_iter().flatten() {
                if next != from && !prev.contains_key(next) {
                    prev.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        None
    };
    let mut found = BTreeSet::new();
    for (a, outs) in edges {
        for b in outs {
            let Some(back) = shortest(b, a) else { continue };
            let mut cycle: Vec<PathBuf> = std::iter::once(a.clone()).chain(back.into_iter().take_while(|f| f != a)).collect();
            let least = cycle.iter().enumerate().min_by_key(|(_, f)| (*f).clone()).map(|(i, _)| i).unwrap_or(0);
            cycle.rotate_left(least);
            found.insert(cycle);
        }
    }
    found
}

/// The workspace's members, from the root `Cargo.toml`.
fn members(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("the root Cargo.toml");
    let list = manifest.split("members = [").nth(1).and_then(|rest| rest.split(']').next()).expect("[workspace] members");
    list.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()).map(|m| root.join(m)).collect()
}

fn crates(root: &Path) -> Vec<Crate> {
    let mut out = Vec::new();
    for member in members(root) {
        let src = member.join("src");
        let name = member.strip_prefix(root).ok().map(|p| p.display().to_string()).filter(|p| !p.is_empty()).unwrap_or_else(|| ".".into());
        let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).filter(|f| f.exists()).collect();
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            let mut bins: Vec<PathBuf> = bins.filter_map(|e| e.ok().map(|e| e.path())).collect();
            bins.sort();
            for b in bins {
                if b.extension().is_some_and(|e| e == "rs") {
                    roots.push(b);
                } else if b.join("main.rs").exists() {
                    roots.push(b.join("main.rs"));
                }
            }
        }
        for r in roots {
            let label = format!("{name} ({})", r.strip_prefix(root).unwrap_or(&r).display());
            out.push(load(label, &src, &r));
        }
    }
    out
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut report = Vec::new();
    let all = crates(root);
    assert!(all.len() >= 8, "every crate of the workspace is scanned: {:?}", all.iter().map(|c| &c.label).collect::<Vec<_>>());
    for c in &all {
        for cycle in cycles(&c.edges()) {
            let chain: Vec<String> = cycle.iter().chain(cycle.first()).map(|f| c.show(f)).collect();
            report.push(format!("{}: {}", c.label, chain.join(" → ")));
        }
    }
    assert!(report.is_empty(), "{} import cycles:\n{}", report.len(), report.join("\n"));
}

/// The scanner on small crates written to a temporary directory.
mod scanner {
    use super::*;

    fn krate(files: &[(&str, &str)]) -> (tempfile::TempDir, Crate) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let c = load("t".into(), dir.path(), &dir.path().join("lib.rs"));
        (dir, c)
    }

    fn chains(c: &Crate) -> Vec<String> {
        cycles(&c.edges()).iter().map(|cy| cy.iter().chain(cy.first()).map(|f| c.show(f)).collect::<Vec<_>>().join(" → ")).collect()
    }

    #[test]
    fn a_cycle_through_a_re_export_is_found_and_shown_as_a_chain() {
        let (_d, c) = krate(&[
            ("lib.rs", "pub mod ctx;\npub mod processor;\npub use ctx::{Ctx, Other as Renamed};\n"),
            ("ctx.rs", "use crate::processor::ProcessError;\npub struct Ctx;\n"),
            ("processor.rs", "//! uses crate::nothing in a comment\nfn f(_: &crate::Ctx) { let _ = \"crate::ctx\"; }\npub struct ProcessError;\n"),
        ]);
        assert_eq!(chains(&c), ["ctx.rs → processor.rs → ctx.rs"]);
    }

    #[test]
    fn tests_naming_their_file_child_modules_and_other_crates_make_no_cycle() {
        let (_d, c) = krate(&[
            ("lib.rs", "mod runtime;\nmod flow;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"),
            ("runtime/mod.rs", "pub mod align;\nuse self::align::Step;\nfn f() { let align::Step::Record { .. } = todo!(); }\nuse crate::flow::Flow;\n"),
            ("runtime/align.rs", "use std::fmt;\nuse storeflow_ingest::Record;\npub enum Step { Record }\nmacro_rules! m { () => { $crate::runtime::x() } }\n"),
            ("flow.rs", "pub struct Flow;\n#[cfg(test)]\nmod tests { use super::*; use crate::runtime::align::Step; }\n"),
        ]);
        assert_eq!(chains(&c), Vec::<String>::new());
        let e = c.edges();
        let f = |p: &str| c.src.join(p);
        assert_eq!(e[&f("runtime/mod.rs")], BTreeSet::from([f("runtime/align.rs"), f("flow.rs")]));
        assert_eq!(e[&f("flow.rs")], BTreeSet::from([f("runtime/align.rs")]));
    }

    #[test]
    fn super_from_a_child_module_reaches_its_parent() {
        let (_d, c) = krate(&[
            ("lib.rs", "pub mod orders;\n"),
            ("orders/mod.rs", "mod saga;\npub struct Orders;\nfn f() { saga::go(); }\n"),
            ("orders/saga.rs", "use super::Orders;\npub fn go() {}\n"),
        ]);
        assert_eq!(chains(&c), ["orders/mod.rs → orders/saga.rs → orders/mod.rs"]);
    }
}
