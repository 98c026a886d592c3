//! The real programs the machine runs while it is traced, each a bash
//! script in its own cgroup (which names it in the findings, and lets the
//! harness kill whatever it leaves), and the scenarios that leak zombies
//! of known pids on purpose.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::judge::{Expected, Kind};

pub struct Workload {
    pub name: &'static str,
    pub script: String,
    /// A failure fails the test (a workload that did not run tested
    /// nothing); Python's own test suite may fail a timing test on a
    /// loaded machine, which says nothing about reaper-trace.
    pub must_succeed: bool,
}

/// What the scripts need.
pub struct Context {
    pub work: PathBuf,
    pub scenario: PathBuf,
    pub fork_exit: PathBuf,
    pub python: String,
    pub pg_bin: PathBuf,
    /// How long the looping workloads loop.
    pub seconds: u64,
}

/// Every workload, each a real program doing its ordinary work.
pub fn all(c: &Context) -> Vec<Workload> {
    [
        git, timeout, fork_exit, make, python, postgres, jobs, xargs, storm,
    ]
    .iter()
    .map(|workload| workload(c))
    .collect()
}

fn git(c: &Context) -> Workload {
    let w = c.work.display();
    let secs = c.seconds;
    Workload {
        name: "git",
        script: format!(
            r#"set -e
export HOME={w}/git GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=rt GIT_AUTHOR_EMAIL=rt@example.invalid GIT_COMMITTER_NAME=rt GIT_COMMITTER_EMAIL=rt@example.invalid
mkdir -p "$HOME" && cd "$HOME" && git init -q repo && cd repo
i=0
while [ $SECONDS -lt {secs} ]; do
  i=$((i + 1)); echo $i >> f$((i % 7)); git add -A; git commit -q -m c$i
  git log --oneline | head -3 > /dev/null; git status --short > /dev/null
  if [ $((i % 20)) = 0 ]; then git gc -q; fi
done
git log -p | tail -1 > /dev/null"#
        ),
        must_succeed: true,
    }
}

fn timeout(_: &Context) -> Workload {
    Workload {
        // Issue 18's reproduction: timeout kills its own process group.
        name: "timeout",
        script: "for i in $(seq 60); do timeout -s KILL 0.5 sh -c 'sleep 3; echo no'; done; true"
            .into(),
        must_succeed: true,
    }
}

fn fork_exit(c: &Context) -> Workload {
    let fork_exit = c.fork_exit.display();
    Workload {
        // The other one: a child and its parent exit together.
        name: "fork_exit",
        script: format!("sleep 5; for i in $(seq 300); do {fork_exit}; done"),
        must_succeed: true,
    }
}

fn make(c: &Context) -> Workload {
    let w = c.work.display();
    let secs = c.seconds;
    Workload {
        name: "make",
        script: format!(
            r#"set -e
mkdir -p {w}/make && cd {w}/make
{{ printf 'all:'; for i in $(seq 200); do printf ' out/%s.o' $i; done; printf '\n'
  printf 'out/%%.o: | out\n\t@echo $* > $@.tmp && mv $@.tmp $@\n'
  printf 'out:\n\tmkdir -p out\n'
  printf 'clean:\n\trm -rf out\n'; }} > Makefile
while [ $SECONDS -lt {secs} ]; do make -s -j2; make -s clean; done"#
        ),
        must_succeed: true,
    }
}

fn python(c: &Context) -> Workload {
    let w = c.work.display();
    Workload {
        name: "python",
        script: format!(
            "mkdir -p {w}/python && cd {w}/python && TMPDIR={w}/python {} -m test test_subprocess",
            c.python
        ),
        must_succeed: false,
    }
}

fn postgres(c: &Context) -> Workload {
    let w = c.work.display();
    let pg = c.pg_bin.display();
    Workload {
        // initdb refuses root: the server runs as postgres, on a unix
        // socket in its own directory only; pgbench -C connects anew
        // for every transaction (a backend forked each time).
        name: "postgres",
        script: format!(
            r#"set -e
D={w}/pg
mkdir -p $D && chown postgres: $D
runuser -u postgres -- {pg}/initdb -D $D/data -A trust -U postgres --no-sync > $D/initdb.log
runuser -u postgres -- {pg}/pg_ctl -D $D/data -w -l $D/server.log -o "-k $D -c listen_addresses= -c fsync=off" start > /dev/null
trap 'runuser -u postgres -- {pg}/pg_ctl -D $D/data -m fast -w stop > /dev/null' EXIT
{pg}/pgbench -h $D -U postgres -i -q postgres 2> $D/init.log
{pg}/pgbench -h $D -U postgres -C -c 2 -T {} postgres > $D/bench.log 2>&1
tail -n 4 $D/bench.log"#,
            c.seconds.saturating_sub(30).max(20)
        ),
        must_succeed: true,
    }
}

fn jobs(c: &Context) -> Workload {
    let secs = c.seconds;
    Workload {
        name: "jobs",
        script: format!(
            r#"set -m
while [ $SECONDS -lt {secs} ]; do
  sleep 10 &
  sleep 0.05 &
  sh -c 'exit 3' &
  kill %1
  wait
  (sleep 0.02; exit 4) &
  wait $!
done
true"#
        ),
        must_succeed: true,
    }
}

fn xargs(c: &Context) -> Workload {
    let secs = c.seconds;
    Workload {
        name: "xargs",
        script: format!(
            r#"set -e
while [ $SECONDS -lt {secs} ]; do
  seq 400 | xargs -P 4 -n 1 true
  seq 400 | xargs -P 4 -n 20 sh -c 'for x; do :; done; ls / > /dev/null' sh
done"#
        ),
        must_succeed: true,
    }
}

fn storm(c: &Context) -> Workload {
    let scenario = c.scenario.display();
    Workload {
        name: "storm",
        script: format!("sleep 20; {scenario} storm 15000"),
        must_succeed: true,
    }
}

/// Builds the C program whose whole body is `fork(); _exit(0);`.
pub fn build_fork_exit(work: &Path) -> anyhow::Result<PathBuf> {
    let src = work.join("fork_exit.c");
    let bin = work.join("fork_exit");
    std::fs::write(
        &src,
        "#include <unistd.h>\nint main(void) { fork(); _exit(0); }\n",
    )?;
    let status = Command::new("gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .context("running gcc (cargo xtask setup installs it)")?;
    if !status.success() {
        bail!("gcc failed on {}", src.display());
    }
    Ok(bin)
}

/// A Python whose own test package has `test_subprocess` (pyenv's may; Debian's
/// needs libpython3.X-testsuite, which set-up installs).
pub fn python_with_tests() -> anyhow::Result<String> {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python)
            .args(["-c", "import test.test_subprocess"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(python.to_owned());
        }
    }
    bail!(
        "no python3 with test.test_subprocess: install libpython3.X-testsuite (cargo xtask setup does)"
    )
}

/// The newest PostgreSQL's programs (Debian keeps them off PATH).
pub fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (cargo xtask setup installs it)")?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

/// A scenario leaking on purpose, run to its end; what it must be found for.
pub fn leak(command: Vec<String>, log: &Path) -> anyhow::Result<Vec<Expected>> {
    let mut child: Child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let mut truths = Vec::new();
    let mut text = String::new();
    for line in BufReader::new(child.stderr.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        text.push_str(&line);
        text.push('\n');
        if let Some(json) = line.strip_prefix("TRUTH ") {
            truths.push(serde_json::from_str::<Value>(json)?);
        }
    }
    let status = child.wait()?;
    std::fs::write(log, &text)?;
    if !status.success() {
        bail!("{command:?} failed ({status}): {text}");
    }
    Ok(truths.iter().flat_map(expected_of).collect())
}

/// The findings a scenario's TRUTH line promises: `zombie_hold`'s zombie
/// (unreaped, adopted once the scenario exits), `demo`'s leaked children
/// (the same) and its late reap.
pub fn expected_of(truth: &Value) -> Vec<Expected> {
    let pid = |v: &Value| v.as_u64().map(|n| n as u32);
    let Some(parent) = pid(&truth["parent"]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(z) = pid(&truth["zombie"]) {
        out.push(Expected {
            what: "zombie_hold",
            kind: Kind::Unreaped,
            pid: z,
            parent_pid: parent,
        });
    }
    let list = |key: &str| -> Vec<u32> {
        truth[key]
            .as_array()
            .map(|a| a.iter().filter_map(pid).collect())
            .unwrap_or_default()
    };
    for z in list("leaked") {
        out.push(Expected {
            what: "demo leaked",
            kind: Kind::Unreaped,
            pid: z,
            parent_pid: parent,
        });
    }
    for z in list("late") {
        out.push(Expected {
            what: "demo late",
            kind: Kind::LateReap,
            pid: z,
            parent_pid: parent,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truths_name_the_leaks() {
        let hold: Value = serde_json::from_str(r#"{"parent": 10, "zombie": 11}"#).unwrap();
        assert_eq!(
            expected_of(&hold),
            vec![Expected {
                what: "zombie_hold",
                kind: Kind::Unreaped,
                pid: 11,
                parent_pid: 10
            }]
        );
        let demo: Value = serde_json::from_str(
            r#"{"parent": 10, "reaped": [1, 2], "leaked": [12, 13], "late": [14], "killed": [2]}"#,
        )
        .unwrap();
        let kinds: Vec<_> = expected_of(&demo).iter().map(|e| (e.kind, e.pid)).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Unreaped, 12),
                (Kind::Unreaped, 13),
                (Kind::LateReap, 14)
            ]
        );
    }
}
