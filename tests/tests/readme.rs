//! The README and docs/ stay true to the tool: every `reaper-trace` and
//! `cargo xtask` command in their ```sh blocks names a real subcommand and
//! only flags its `--help` lists (nothing is run but `--help`), every
//! `cargo test --test NAME` names a test file, and every relative link
//! (and `#anchor`) points at a file (and heading) that exists. No root.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use reaper_trace_tests::{tool, xtask_bin};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// README.md and every page in docs/.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    docs.insert(0, repo().join("README.md"));
    docs
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The commands of a document: every line of its ```sh blocks, and the
/// `$ `-prompted lines of its other code blocks (a session shown with its
/// output).
fn sh_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let (mut in_code, mut in_sh) = (false, false);
    for line in text.lines() {
        let fence = line.trim_start();
        if fence.starts_with("```") {
            in_sh = !in_code && fence == "```sh";
            in_code = !in_code;
        } else if in_sh {
            lines.push(line.to_string());
        } else if let Some(command) = line.strip_prefix("$ ").filter(|_| in_code) {
            lines.push(command.to_string());
        }
    }
    lines
}

/// One shell line as words: without its comment, its `sudo` and its
/// leading `VAR=value` assignments, cut at a redirection or pipe.
fn command_words(line: &str) -> Vec<&str> {
    let code = line.split(" #").next().unwrap_or("");
    let code = if code.trim_start().starts_with('#') {
        ""
    } else {
        code
    };
    let mut words: Vec<&str> = code
        .split_whitespace()
        .take_while(|w| !matches!(*w, ">" | "|" | "&&" | ";"))
        .collect();
    while let Some(first) = words.first() {
        let assignment = first.contains('=') && !first.starts_with('-');
        if *first == "sudo" || first.starts_with("--preserve-env") || assignment {
            words.remove(0);
        } else {
            break;
        }
    }
    words
}

/// The options among a command's words, before `--` (what follows is the
/// traced command's): `[--format` gives `--format`, `--x=1` gives `--x`.
fn options<'a>(words: &[&'a str]) -> Vec<&'a str> {
    words
        .iter()
        .take_while(|w| **w != "--")
        .map(|w| w.trim_start_matches('['))
        .filter(|w| w.starts_with('-') && w.len() > 1 && !w.starts_with("-0"))
        .map(|w| w.split(['=', ']']).next().unwrap_or(w))
        .collect()
}

/// Whether a `--help` text lists an option (`-o, --output <FILE>`).
fn help_lists(help: &str, option: &str) -> bool {
    help.match_indices(option).any(|(at, _)| {
        let before = help[..at].chars().next_back();
        let after = help[at + option.len()..].chars().next();
        let starts = before.is_none_or(|c| c.is_whitespace() || c == ',');
        let ends = after.is_none_or(|c| c.is_whitespace() || matches!(c, ',' | '=' | '<' | '['));
        starts && ends
    })
}

/// Runs `program args... --help` (memoized) and returns its stdout.
fn help(cache: &mut HashMap<Vec<String>, String>, program: &Path, args: &[&str]) -> String {
    let key: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    cache
        .entry(key)
        .or_insert_with(|| {
            let out = Command::new(program)
                .args(args)
                .arg("--help")
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
            assert!(
                out.status.success(),
                "`{} {} --help` failed: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).expect("help is UTF-8")
        })
        .clone()
}

/// Whether a `--help` text's command list names a subcommand.
fn lists_subcommand(help: &str, name: &str) -> bool {
    help.lines()
        .any(|line| line.starts_with("  ") && line.split_whitespace().next() == Some(name))
}

/// Checks one command (its program and subcommand, then its options)
/// against the real `--help`; returns what is wrong with it.
fn check_command(
    cache: &mut HashMap<Vec<String>, String>,
    program: &Path,
    words: &[&str],
) -> Vec<String> {
    let Some(sub) = words.first() else {
        return vec!["no subcommand".to_string()];
    };
    if !lists_subcommand(&help(cache, program, &[]), sub) {
        return vec![format!("no subcommand `{sub}`")];
    }
    let sub_help = help(cache, program, &[sub]);
    options(&words[1..])
        .into_iter()
        .filter(|option| !help_lists(&sub_help, option))
        .map(|option| format!("`{sub}` has no option `{option}`"))
        .collect()
}

#[test]
fn every_documented_command_parses() {
    let mut cache = HashMap::new();
    let (reaper_trace, xtask) = (tool(), xtask_bin());
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        for line in sh_lines(&read(&doc)) {
            let words = command_words(&line);
            let found = match words.as_slice() {
                ["reaper-trace", rest @ ..] => check_command(&mut cache, &reaper_trace, rest),
                ["cargo", "xtask", rest @ ..] => check_command(&mut cache, &xtask, rest),
                ["cargo", "test", rest @ ..] => test_targets_exist(rest),
                _ => continue,
            };
            checked += 1;
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("{}: `{}`: {p}", doc.display(), line.trim())),
            );
        }
    }
    assert!(
        checked > 20,
        "only {checked} commands found: is the parsing right?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `cargo test ... --test NAME`: tests/tests/NAME.rs exists.
fn test_targets_exist(words: &[&str]) -> Vec<String> {
    words
        .windows(2)
        .filter(|pair| pair[0] == "--test")
        .map(|pair| pair[1])
        .filter(|name| !repo().join(format!("tests/tests/{name}.rs")).exists())
        .map(|name| format!("no test file tests/tests/{name}.rs"))
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a document's headings, outside code blocks.
fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of a document's inline links `[text](target)`.
fn link_targets(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .filter(|target| !target.contains(char::is_whitespace))
        .collect()
}

#[test]
fn every_relative_link_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().expect("document's folder").join(path)
            };
            if !file.exists() {
                problems.push(format!("{}: ({target}): no such file", doc.display()));
            } else if !fragment.is_empty() && !anchors(&read(&file)).iter().any(|a| a == fragment) {
                problems.push(format!("{}: ({target}): no such heading", doc.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parsing right?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_parsers_read_what_the_docs_write() {
    assert_eq!(
        command_words("sudo reaper-trace check [--junit FILE] -- make test # CI"),
        [
            "reaper-trace",
            "check",
            "[--junit",
            "FILE]",
            "--",
            "make",
            "test"
        ]
    );
    assert_eq!(
        options(&command_words(
            "reaper-trace check [--format text|json] [-o RECORDING] -- make -j8"
        )),
        ["--format", "-o"]
    );
    assert_eq!(
        command_words("REAPER_TRACE_CRAFTED_DIR=DIR cargo test -p x > out"),
        ["cargo", "test", "-p", "x"]
    );
    assert!(help_lists("  -o, --output <FILE>  where", "-o"));
    assert!(help_lists("  -o, --output <FILE>  where", "--output"));
    assert!(!help_lists("      --outputs <FILE>", "--output"));
    assert_eq!(
        sh_lines("```sh\na # b\n```\n$ no\n```\n$ c\nd\n```\n"),
        ["a # b", "c"]
    );
    assert_eq!(
        anchor(" Fleet: a daemon, scraped"),
        "fleet-a-daemon-scraped"
    );
    assert_eq!(
        link_targets("see [a](b.md#c) and [d](http://e)"),
        ["b.md#c", "http://e"]
    );
}
