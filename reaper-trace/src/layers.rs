//! The import check: no circle and no upward import in `reaper-trace/src`.
//!
//! How it works: the module tree is read from the `mod x;` declarations,
//! starting at `lib.rs` (the library) and `main.rs` (the binary, whose
//! modules count as one top module, `bin`). Every path a file writes that
//! names a module of this crate is collected: `crate::…`, `super::…`,
//! `self::…` and, in the binary, `reaper_trace::…`, whether in a `use` or in
//! an expression, with `{…}` groups expanded; comments and literals are
//! skipped, and inline modules (`mod tests { use super::*; }`) are followed
//! so `super` means what the compiler says it means. Test code
//! (`#[cfg(test)]` modules, inline or in their own file) is skipped: a test
//! may drive a stage through a later one (the analysis's tests read the
//! report's text). A path is charged to the file module it lands in; a name a `mod.rs` re-exports (`pub use
//! x::Y`) is charged to the file that defines it.
//!
//! Each import `a::…::x → a::…::y` is an edge between the two children of
//! their common ancestor (`output::timeline::json → output::metrics` is an
//! edge `timeline → metrics` among `output`'s children). A module and its
//! own descendants are not an edge: `mod.rs` is a module's front door.
//! Two checks follow:
//! - no cycle among the children of any module (the crate's top modules,
//!   and the files of every folder);
//! - no top module imports one above it in [`LAYERS`].
//!
//! [`KNOWN`] lists violations another branch is removing (none now); the
//! lead deletes each line as that branch merges. An edge there that no longer
//! exists fails the test too, so the list cannot rot.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// The top modules from the bottom up. A module may import those on its
/// own line or below, never above. `bin` is `main.rs` with `cli`,
/// `commands` and `generate`.
const LAYERS: &[&[&str]] = &[
    &["trace"],
    &["host", "kernel"],
    &["cgroup"],
    &["analysis"],
    &["recording"],
    // The one path records take, and the trait its outputs implement.
    &["pipeline"],
    &["output"],
    &["live", "serve", "verify"],
    &["bin"],
];

/// Edges, as `parent: from -> to` between siblings (the crate root's
/// parent being ``, e.g. `": analysis -> output"`), that are known
/// violations being fixed on another branch; each with a comment naming
/// it. Empty since `codes` merged (it had `analysis: findings -> hints`).
const KNOWN: &[&str] = &[];

#[derive(Debug, PartialEq, Clone)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Other,
}

/// The tokens that matter for paths; comments, strings, chars and
/// lifetimes are dropped. Works on bytes: everything it looks for is ASCII.
fn tokens(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let find = |from: usize, pat: &[u8]| {
        (from..b.len())
            .find(|&k| b[k..].starts_with(pat))
            .unwrap_or(b.len())
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if b[i..].starts_with(b"//") {
            i = find(i, b"\n");
        } else if b[i..].starts_with(b"/*") {
            // Block comments nest.
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = (c == b'r').then(|| raw_string(b, i)).flatten() {
            i = end;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'\'' {
            i = char_literal_end(src, i).unwrap_or(i + 1);
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[start..i].to_owned()));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Other);
        } else {
            i += 1;
            let tok = match c {
                b':' if b.get(i) == Some(&b':') => {
                    i += 1;
                    Tok::PathSep
                }
                b'{' => Tok::Open,
                b'}' => Tok::Close,
                b',' => Tok::Comma,
                b'*' => Tok::Star,
                _ if c.is_ascii_whitespace() => continue,
                _ => Tok::Other,
            };
            out.push(tok);
        }
    }
    out
}

/// The end of the raw string starting at `i` (`r"…"`, `r#"…"#`), if one does.
fn raw_string(b: &[u8], i: usize) -> Option<usize> {
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    if b.get(i + 1 + hashes) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = i + 2 + hashes;
    Some(
        (body..b.len())
            .find(|&k| b[k..].starts_with(&close))
            .map_or(b.len(), |k| k + close.len()),
    )
}

/// The end of the char literal starting at `i` (`'x'`, `'\n'`, `'é'`), or
/// `None` for a lifetime (`'a`).
fn char_literal_end(src: &str, i: usize) -> Option<usize> {
    let b = src.as_bytes();
    if b.get(i + 1) == Some(&b'\\') {
        return (i + 3..b.len()).find(|&k| b[k] == b'\'').map(|k| k + 1);
    }
    let len = src.get(i + 1..)?.chars().next()?.len_utf8();
    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
}

/// Reads a path tree starting at `t[i]` (a segment or a `{…}` group) below
/// `prefix`; pushes each full path to `out`, returns where it ends.
fn tree(t: &[Tok], mut i: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        match t.get(i) {
            Some(Tok::Ident(s)) => {
                if s != "self" {
                    prefix.push(s.clone());
                }
                i += 1;
            }
            Some(Tok::Star) => i += 1,
            Some(Tok::Open) => {
                i += 1;
                while i < t.len() && t[i] != Tok::Close {
                    i = tree(t, i, prefix.clone(), out);
                    // Skip `as alias` and the comma.
                    while i < t.len() && !matches!(t[i], Tok::Comma | Tok::Close) {
                        i += 1;
                    }
                    if t.get(i) == Some(&Tok::Comma) {
                        i += 1;
                    }
                }
                return i + 1;
            }
            _ => break,
        }
        if t.get(i) != Some(&Tok::PathSep) {
            break;
        }
        i += 1;
    }
    out.push(prefix);
    i
}

/// One file module: its path in the tree and what it wrote.
struct File {
    module: Vec<String>,
    /// Absolute paths named, each as written (before re-exports).
    paths: Vec<Vec<String>>,
    /// `pub use` at the top level: the name it exports and its full path.
    exports: Vec<(String, Vec<String>)>,
    /// Its `mod x;` children.
    children: Vec<String>,
}

/// Reads `file` (module `module`, in the crate whose root module is
/// `root`, `lib` naming the library from the binary).
fn read(file: &Path, module: Vec<String>, root: &[String]) -> File {
    let src = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let t = tokens(&src);
    let mut f = File {
        module: module.clone(),
        paths: Vec::new(),
        exports: Vec::new(),
        children: Vec::new(),
    };
    // The inline modules open at each brace depth (None: a plain block),
    // and whether each is test code.
    let mut braces: Vec<Option<(String, bool)>> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(braces.iter().flatten().map(|(name, _)| name.clone()))
            .collect();
        let in_test = braces.iter().flatten().any(|&(_, test)| test);
        let ident = |k: usize| match t.get(k) {
            Some(Tok::Ident(s)) => Some(s.as_str()),
            _ => None,
        };
        match &t[i] {
            Tok::Open => {
                let inline = (i >= 2 && ident(i - 2) == Some("mod")).then(|| {
                    (
                        ident(i - 1).unwrap_or_default().to_owned(),
                        cfg_test(&t, i - 2),
                    )
                });
                braces.push(inline);
            }
            Tok::Close => {
                braces.pop();
            }
            Tok::Ident(s)
                if s == "mod" && t.get(i + 2) == Some(&Tok::Other) && braces.is_empty() =>
            {
                if let Some(name) = ident(i + 1)
                    && !cfg_test(&t, i)
                {
                    f.children.push(name.to_owned());
                }
            }
            _ if in_test => {}
            Tok::Ident(s)
                if t.get(i + 1) == Some(&Tok::PathSep) && (i == 0 || t[i - 1] != Tok::PathSep) =>
            {
                let exported = braces.is_empty()
                    && i >= 2
                    && ident(i - 1) == Some("use")
                    && ident(i - 2) == Some("pub");
                let (base, start) = match s.as_str() {
                    "crate" => (root.to_vec(), i + 2),
                    "reaper_trace" if !root.is_empty() => (Vec::new(), i + 2),
                    "self" => (here.clone(), i + 2),
                    "super" => {
                        let mut up = here.clone();
                        let mut k = i;
                        while ident(k) == Some("super") && t.get(k + 1) == Some(&Tok::PathSep) {
                            up.pop();
                            k += 2;
                        }
                        (up, k)
                    }
                    // A child module named from its parent's mod.rs: only
                    // re-exports matter (a parent importing its child is
                    // never an edge).
                    _ if exported && module.len() == here.len() => (here.clone(), i),
                    _ => {
                        i += 1;
                        continue;
                    }
                };
                let mut found = Vec::new();
                i = tree(&t, start, base, &mut found);
                for path in found {
                    // (An `as` alias is rare enough here to ignore.)
                    if exported && let Some(name) = path.last() {
                        f.exports.push((name.clone(), path.clone()));
                    }
                    f.paths.push(path);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    f
}

/// Whether the `mod` at `t[k]` is `#[cfg(test)] (pub) mod`.
fn cfg_test(t: &[Tok], k: usize) -> bool {
    let k = if k >= 1 && t[k - 1] == Tok::Ident("pub".into()) {
        k - 1
    } else {
        k
    };
    k >= 5 && t[k - 5] == Tok::Ident("cfg".into()) && t[k - 3] == Tok::Ident("test".into())
}

/// Every file module of the crate rooted at `dir/root_file`.
fn crate_files(dir: &Path, root_file: &str, root: Vec<String>) -> Vec<File> {
    let mut files = Vec::new();
    let mut todo = vec![(dir.join(root_file), root.clone(), dir.to_path_buf())];
    while let Some((path, module, children_dir)) = todo.pop() {
        let f = read(&path, module.clone(), &root);
        for child in &f.children {
            let flat = children_dir.join(format!("{child}.rs"));
            let nested = children_dir.join(child).join("mod.rs");
            let (file, dir) = if flat.exists() {
                (flat, children_dir.join(child))
            } else {
                (nested, children_dir.join(child))
            };
            let mut m = module.clone();
            m.push(child.clone());
            todo.push((file, m, dir));
        }
        files.push(f);
    }
    files
}

/// The file module `path` lands in, through re-exports.
fn resolve(
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
    exports: &BTreeMap<(Vec<String>, String), Vec<String>>,
    depth: u32,
) -> Option<Vec<String>> {
    let len = (0..=path.len())
        .rev()
        .find(|&n| modules.contains(&path[..n]))?;
    let module = path[..len].to_vec();
    // `depth` bounds a chain of re-exports (`pub use super::x::*` could
    // name itself).
    if let Some(name) = path.get(len)
        && depth < 8
        && let Some(target) = exports.get(&(module.clone(), name.clone()))
    {
        let mut full = target.clone();
        full.extend(path[len + 1..].iter().cloned());
        return resolve(&full, modules, exports, depth + 1).or(Some(module));
    }
    Some(module)
}

/// `parent: from -> to` for each import between two modules, as described
/// in the module docs.
fn edges() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = crate_files(&src, "lib.rs", Vec::new());
    let bin = vec!["bin".to_owned()];
    files.extend(crate_files(&src, "main.rs", bin));
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut exports = BTreeMap::new();
    for f in &files {
        for (name, path) in &f.exports {
            exports.insert((f.module.clone(), name.clone()), path.clone());
        }
    }
    let mut edges = BTreeSet::new();
    for f in &files {
        for path in &f.paths {
            let Some(to) = resolve(path, &modules, &exports, 0) else {
                continue;
            };
            let common = f.module.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == f.module.len() || common == to.len() {
                continue; // Itself, an ancestor or a descendant.
            }
            edges.insert(format!(
                "{}: {} -> {}",
                f.module[..common].join("::"),
                f.module[common],
                to[common]
            ));
        }
    }
    edges
}

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("top module `{module}` has no place in LAYERS"))
}

/// A cycle among `graph`'s nodes, if there is one (depth-first search).
fn cycle(graph: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        g: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|&s| s == n) {
            return Some(
                stack[at..]
                    .iter()
                    .chain([&n])
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for &m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn imports_flow_one_way() {
    let all = edges();
    let stale: Vec<_> = KNOWN.iter().filter(|k| !all.contains(**k)).collect();
    assert!(
        stale.is_empty(),
        "known exceptions that no longer exist (delete them from KNOWN): {stale:?}"
    );
    let checked: Vec<&String> = all
        .iter()
        .filter(|e| !KNOWN.contains(&e.as_str()))
        .collect();

    let mut graphs: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    let mut upward = Vec::new();
    for e in &checked {
        let (parent, pair) = e.split_once(": ").expect("parent: from -> to");
        let (from, to) = pair.split_once(" -> ").expect("from -> to");
        graphs
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .push(to);
        if parent.is_empty() && layer(from) < layer(to) {
            upward.push(e.as_str());
        }
    }
    assert!(upward.is_empty(), "upward imports (see LAYERS): {upward:?}");
    for (parent, graph) in &graphs {
        if let Some(c) = cycle(graph) {
            panic!(
                "import circle among the children of `{parent}`: {}",
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn the_check_sees_what_it_should() {
    let all = edges();
    // A `use` group, an expression path, a sibling through `super`, and a
    // re-export followed to its file.
    for e in [
        ": output -> analysis",
        "bin: commands -> cli",
        ": verify -> output",
        "output::timeline: json -> model",
    ] {
        assert!(all.contains(e), "{e} missing from {all:#?}");
    }
    // Test code is skipped: `analysis/tests.rs` reads the report text.
    assert!(
        !all.iter().any(|e| e.contains("test")),
        "test modules are checked: {all:#?}"
    );
}

#[test]
fn a_made_up_circle_is_found() {
    let graph = BTreeMap::from([
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]);
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let graph = BTreeMap::from([("a", vec!["b", "c"]), ("b", vec!["c"])]);
    assert_eq!(cycle(&graph), None);
    assert!(layer("trace") < layer("analysis") && layer("output") < layer("bin"));
}
