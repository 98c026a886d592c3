//! `reaper-trace __generate man|completions DIR`: the man pages and the
//! shell completions, rendered from the very clap definitions the binary
//! parses with, so that they cannot drift from it. `cargo xtask dist` runs
//! it on the static binary it packages.

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::{
    cli::{Cli, Generated},
    fail,
};

/// The program's name, as installed and as the completions complete it.
const NAME: &str = "reaper-trace";

/// Writes what was asked into `dir` (made if missing) and prints each file
/// written; any failure is one line on stderr and exit 2.
pub fn run(what: Generated, dir: &Path) -> ExitCode {
    let written = std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {}", dir.display()))
        .and_then(|()| match what {
            Generated::Man => man_pages(dir),
            Generated::Completions => completions(dir),
        });
    match written {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `reaper-trace.1`, and `reaper-trace-SUBCOMMAND.1` for each subcommand
/// that is not hidden (the main page lists them).
fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let cmd = Cli::command();
    let mut names = vec![format!("{NAME}.1")];
    names.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("{NAME}-{}.1", s.get_name())),
    );
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing the man pages into {}", dir.display()))?;
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// The completions of bash, zsh and fish, under the names their
/// completion directories look them up by.
fn completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut cmd = without_hidden_subcommands(Cli::command());
    [
        (Shell::Bash, NAME.to_owned()),
        (Shell::Zsh, format!("_{NAME}")),
        (Shell::Fish, format!("{NAME}.fish")),
    ]
    .into_iter()
    .map(|(shell, name)| {
        let path = dir.join(name);
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, NAME, &mut script);
        if shell == Shell::Bash {
            script = fix_bash_case_labels(&String::from_utf8_lossy(&script)).into_bytes();
        }
        File::create(&path)
            .and_then(|mut file| file.write_all(&script))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    })
    .collect()
}

/// clap_complete's bash script tracks the subcommand path with `cmd`
/// values like `reaper__trace__subcmd__check`, but labels the `case` arms
/// that complete each subcommand's options `reaper__subcmd__trace__subcmd__check`
/// when the program's name has a hyphen (clap-rs/clap#6421, open for
/// clap_complete 4.6.11): no arm matches and no subcommand's options ever
/// complete. This spells the arms the way `cmd` is spelt; once clap_complete
/// is fixed there is nothing left to replace.
fn fix_bash_case_labels(script: &str) -> String {
    let wrong = NAME.replace('-', "__subcmd__");
    let right = NAME.replace('-', "__");
    script
        .split_inclusive('\n')
        .map(|line| {
            let label = line.trim_start();
            match label.strip_prefix(wrong.as_str()) {
                Some(rest) if rest.trim_end().ends_with(')') => {
                    let indent = &line[..line.len() - label.len()];
                    format!("{indent}{right}{rest}")
                }
                _ => line.to_owned(),
            }
        })
        .collect()
}

/// The command without its hidden subcommands, which clap_complete would
/// otherwise offer (it ignores `hide` on subcommands). clap cannot remove a
/// subcommand, so this builds the top level anew (its name, version, about,
/// the settings the derive sets and its arguments) with the visible
/// subcommands as they are.
fn without_hidden_subcommands(cmd: clap::Command) -> clap::Command {
    let mut pruned = clap::Command::new(NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(cmd.is_subcommand_required_set())
        .arg_required_else_help(cmd.is_arg_required_else_help_set())
        .args(cmd.get_arguments().cloned());
    if let Some(about) = cmd.get_about() {
        pruned = pruned.about(about.clone());
    }
    if let Some(about) = cmd.get_long_about() {
        pruned = pruned.long_about(about.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pruned = pruned.subcommand(sub.clone());
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "reaper-trace-generate-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand_and_no_hidden_one() {
        let dir = scratch("man");
        std::fs::create_dir_all(&dir).unwrap();
        let files = man_pages(&dir).unwrap();
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        listed.sort();
        assert_eq!(on_disk, listed, "the pages listed are the pages written");
        for sub in [
            "live",
            "record",
            "check",
            "serve",
            "verify-kernel",
            "report",
            "zombies",
        ] {
            assert!(listed.contains(&format!("reaper-trace-{sub}.1")), "{sub}");
        }
        assert!(!listed.iter().any(|n| n.contains("__")), "{listed:?}");
        let main = std::fs::read_to_string(dir.join("reaper-trace.1")).unwrap();
        assert!(main.contains(".TH reaper-trace 1"), "{main}");
        assert!(main.contains("reaper\\-trace\\-live(1)"), "{main}");
        assert!(!main.contains("__workload") && !main.contains("__generate"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn fish_text(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn pruning_keeps_the_visible_subcommands_as_they_are() {
        let full = Cli::command();
        let pruned = without_hidden_subcommands(Cli::command());
        let visible: Vec<&str> = full
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name())
            .collect();
        let kept: Vec<&str> = pruned.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(kept, visible);
        assert!(visible.len() >= 6 && full.get_subcommands().count() > visible.len());
        assert_eq!(pruned.get_version(), full.get_version());
        assert_eq!(
            pruned.get_about().map(|a| a.to_string()),
            full.get_about().map(|a| a.to_string())
        );
        assert!(pruned.is_subcommand_required_set() == full.is_subcommand_required_set());
        assert_eq!(pruned.get_arguments().count(), full.get_arguments().count());
        let check = |c: &clap::Command| {
            let sub = c.find_subcommand("check").unwrap();
            sub.get_arguments()
                .map(|a| a.get_id().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(check(&pruned), check(&full));
    }

    #[test]
    fn bash_case_labels_are_spelt_as_the_subcommand_path() {
        let buggy = "    case x in\n        reaper__subcmd__trace__subcmd__verify__subcmd__kernel)\n            opts=\"reaper__subcmd__trace\"\n";
        assert_eq!(
            fix_bash_case_labels(buggy),
            "    case x in\n        reaper__trace__subcmd__verify__subcmd__kernel)\n            opts=\"reaper__subcmd__trace\"\n"
        );
        let fixed = "        reaper__trace__subcmd__check)\n";
        assert_eq!(fix_bash_case_labels(fixed), fixed);
    }

    /// Every `cmd="..."` state the bash script reaches has an arm that
    /// completes it.
    fn bash_states_have_arms(script: &str) {
        let arms: Vec<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_suffix(')'))
            .collect();
        let states: Vec<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|state| !state.is_empty())
            .collect();
        assert!(states.len() > 6, "{script}");
        for state in states {
            assert!(arms.contains(&state), "no arm for {state}");
        }
    }

    #[test]
    fn completions_are_written_for_bash_zsh_and_fish() {
        let dir = scratch("completions");
        std::fs::create_dir_all(&dir).unwrap();
        let files = completions(&dir).unwrap();
        assert_eq!(
            files,
            ["reaper-trace", "_reaper-trace", "reaper-trace.fish"].map(|n| dir.join(n))
        );
        let bash = std::fs::read_to_string(&files[0]).unwrap();
        assert!(bash.contains("complete -F"), "{bash}");
        assert!(bash.contains("verify-kernel"));
        bash_states_have_arms(&bash);
        let zsh = std::fs::read_to_string(&files[1]).unwrap();
        for text in [&bash, &zsh, &fish_text(&files[2])] {
            assert!(!text.contains("__workload") && !text.contains("__generate"));
        }
        assert!(zsh.starts_with("#compdef reaper-trace"), "{zsh}");
        let fish = std::fs::read_to_string(&files[2]).unwrap();
        assert!(fish.contains("complete -c reaper-trace"), "{fish}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
