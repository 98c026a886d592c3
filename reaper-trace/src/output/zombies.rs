//! `reaper-trace zombies` for people and for scripts. Pure: returns strings.
//! Everything from the traced system (comms, cgroup paths) is escaped; the
//! explanation's texts already are.

use std::fmt::Write as _;

use crate::{
    analysis::{
        diagnosis::now,
        snapshot::{CgroupNow, ParentGroup, Snapshot, ZombieNow},
    },
    trace::{escape::escape, names::seconds},
};

/// Zombies listed by pid per parent in text; JSON lists them all.
const LISTED: usize = 10;

/// The snapshot as one JSON object.
pub fn json(snapshot: &Snapshot) -> String {
    serde_json::to_string(snapshot).unwrap_or_default()
}

/// The snapshot as text: a line of totals, then per cgroup its pids
/// standing and per parent its zombies, what explains them, and the fix.
pub fn text(s: &Snapshot) -> String {
    let mut out = String::new();
    if s.zombies == 0 {
        out.push_str("no zombies\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{} zombie{} under {} parent{}; {} exited more than {} ago",
        s.zombies,
        plural(s.zombies),
        s.parents,
        plural(s.parents),
        s.over_threshold,
        seconds(s.threshold_ns)
    );
    for group in &s.groups {
        let _ = writeln!(out, "{}", cgroup_line(group.cgroup.as_ref()));
        for parent in &group.parents {
            parent_text(&mut out, parent);
        }
    }
    out.push_str(
        "ages: time since the exit, at least (when the zombie last ran, /proc/PID/sched); \"started … ago\" where the kernel does not say, which is more than the age\n",
    );
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `cgroup /docker/3f2a… (docker 3f2a9c1e0b7d): pids 45, limit 50 at /docker/3f2a… (5 left)`.
fn cgroup_line(cgroup: Option<&CgroupNow>) -> String {
    let Some(c) = cgroup else {
        return "cgroup unknown".to_owned();
    };
    let mut line = format!("cgroup {}", escape(&c.cgroup.path));
    if let Some(brief) = c.cgroup.container.brief() {
        let _ = write!(line, " ({})", escape(&brief));
    }
    match &c.pids {
        Some(pids) => {
            let _ = write!(line, ": pids {}", pids.current);
            match &pids.limit {
                Some(limit) => {
                    let _ = write!(
                        line,
                        ", limit {} at {} ({} of {}: {} left)",
                        limit.max,
                        escape(&limit.cgroup),
                        limit.current,
                        limit.max,
                        limit.headroom
                    );
                }
                None => line.push_str(", no pids.max"),
            }
        }
        None => line.push_str(": no pids controller"),
    }
    line
}

fn parent_text(out: &mut String, p: &ParentGroup) {
    let ns = p
        .ns_pid
        .map(|n| format!(" (ns pid {n})"))
        .unwrap_or_default();
    let oldest = p
        .zombies
        .first()
        .map(|z| format!(", the oldest {}", age_text(z)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  parent {}{ns} ({}): {} zombie{}{oldest}",
        p.pid,
        p.comm,
        p.zombies.len(),
        plural(p.zombies.len())
    );
    let listed: Vec<String> = p
        .zombies
        .iter()
        .take(LISTED)
        .map(|z| format!("{} ({}) {}", z.pid, z.comm, short_age(z)))
        .collect();
    let more = p.zombies.len().saturating_sub(LISTED);
    let _ = writeln!(
        out,
        "    zombies: {}{}",
        listed.join(", "),
        if more > 0 {
            format!(", … and {more} more")
        } else {
            String::new()
        }
    );
    if !p.read {
        out.push_str("    (the parent could not be read: it exited meanwhile)\n");
    }
    // Where its threads are in their own code, once their stacks are named.
    if p.threads.iter().any(|t| t.probe.user_place.is_some()) {
        for t in p.threads.iter().take(now::MAX_THREADS_SHOWN) {
            let _ = writeln!(out, "    {}", now::thread_line(&t.probe));
        }
    }
    for d in &p.explanation {
        let _ = writeln!(out, "    [{}] {}", d.code, d.text);
    }
    if let Some(hint) = &p.hint {
        let _ = writeln!(out, "    fix: {hint}");
    }
}

/// `exited at least 5.201s ago`, or `started 90.000s ago`.
fn age_text(z: &ZombieNow) -> String {
    match (z.exited_ago_ns, z.started_ago_ns) {
        (Some(age), _) => format!("exited at least {} ago", seconds(age)),
        (None, Some(started)) => format!("started {} ago", seconds(started)),
        (None, None) => "of unknown age".to_owned(),
    }
}

fn short_age(z: &ZombieNow) -> String {
    match (z.exited_ago_ns, z.started_ago_ns) {
        (Some(age), _) => seconds(age),
        (None, Some(started)) => format!("started {} ago", seconds(started)),
        (None, None) => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        analysis::snapshot::build,
        cgroup::{
            Cgroup,
            fs::{PidsLimit, PidsNow},
        },
        trace::{
            comm::Comm,
            host_facts::{ParentNow, ParentProbe, ThreadProbe, ZombieProcess, ZombieScan},
        },
    };

    const S: u64 = 1_000_000_000;

    #[test]
    fn text_names_the_cgroup_the_parent_and_the_fix_and_escapes() {
        let mut t = ThreadProbe::basic(20, "a\u{1b}[2Jpp", 'T', "do_signal_stop");
        t.sigchld_blocked = Some(false);
        let scan = ZombieScan {
            now_ns: 100 * S,
            zombies: (0..12)
                .map(|i| ZombieProcess {
                    pid: 100 + i,
                    ppid: 20,
                    comm: Comm::from_str_lossy("w\norker"),
                    started_ns: Some(S),
                    exited_by_ns: Some(100 * S - (i as u64 + 2) * S),
                    cgroup: Some("/test/x\ny".into()),
                    pids_cgroup: None,
                })
                .collect(),
            parents: vec![ParentNow {
                pid: 20,
                comm: Comm::from_str_lossy("a\u{1b}[2Jpp"),
                ns_pid: Some(1),
                probe: Some(ParentProbe {
                    threads: vec![t],
                    sigchld_shared_pending: Some(false),
                    thread_count: Some(1),
                    ..Default::default()
                }),
            }],
        };
        let mut names = BTreeMap::new();
        names.insert(
            "/test/x\ny".to_owned(),
            CgroupNow {
                cgroup: Cgroup::new(9, "/test/x\ny"),
                pids: Some(PidsNow {
                    current: 13,
                    limit: Some(PidsLimit {
                        cgroup: "/test/x\ny".into(),
                        current: 13,
                        max: 16,
                        headroom: 3,
                    }),
                }),
            },
        );
        let text = text(&build(&scan, S, &names));
        assert!(!text.contains('\u{1b}'), "{text}");
        assert_eq!(text.lines().filter(|l| l.contains("x\ny")).count(), 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "12 zombies under 1 parent; 12 exited more than 1.000s ago"
        );
        assert_eq!(
            lines[1],
            "cgroup /test/x\\x0ay: pids 13, limit 16 at /test/x\\x0ay (13 of 16: 3 left)"
        );
        assert!(
            lines[2].starts_with("  parent 20 (ns pid 1) (a\\x1b[2Jpp): 12 zombies, the oldest exited at least 13.000s ago"),
            "{text}"
        );
        assert!(lines[3].ends_with(", … and 2 more"), "{text}");
        assert!(
            text.contains("\n    [parent_stopped] parent 20 is stopped"),
            "{text}"
        );
        assert!(text.contains("\n    fix: the parent is stopped"), "{text}");
    }

    #[test]
    fn named_threads_get_a_line_each_and_the_json_their_place() {
        use crate::trace::stack::{Symbol, UserPlace};
        let mut main = ThreadProbe::basic(20, "app", 'S', "anon_pipe_read");
        main.syscall = Some(crate::trace::host_facts::SyscallProbe {
            nr: libc::SYS_read,
            sp: 1,
            pc: 2,
        });
        let scan = |main: ThreadProbe| ZombieScan {
            now_ns: 100 * S,
            zombies: vec![ZombieProcess {
                pid: 21,
                ppid: 20,
                comm: Comm::from_str_lossy("sh"),
                ..Default::default()
            }],
            parents: vec![ParentNow {
                pid: 20,
                comm: Comm::from_str_lossy("app"),
                ns_pid: None,
                probe: Some(ParentProbe {
                    threads: vec![main, ThreadProbe::basic(22, "worker", 'R', "")],
                    ..Default::default()
                }),
            }],
        };
        // Not unwound: no thread lines.
        let plain = text(&build(&scan(main.clone()), S, &BTreeMap::new()));
        assert!(!plain.contains("    thread 20 (app)"), "{plain}");
        main.user_place = Some(UserPlace::new(
            vec![Symbol {
                module: "/opt/app".into(),
                function: Some("slow_handler".into()),
                file: Some("/src/app.c".into()),
                line: Some(81),
                ..Symbol::default()
            }],
            false,
        ));
        let snapshot = build(&scan(main), S, &BTreeMap::new());
        let text = text(&snapshot);
        assert!(
            text.contains(
                "\n    thread 20 (app) blocked in read ← app.c:81 in slow_handler\n    thread 22 (worker) running\n"
            ),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&snapshot)).unwrap();
        let thread = &v["groups"][0]["parents"][0]["threads"][0];
        assert_eq!(thread["user_place"]["waits_at"], "app.c:81 in slow_handler");
        assert_eq!(thread["syscall_name"], "read");
    }

    #[test]
    fn no_zombies_says_so() {
        let empty = build(&ZombieScan::default(), S, &BTreeMap::new());
        assert_eq!(text(&empty), "no zombies\n");
        assert!(json(&empty).contains("\"zombies\":0"));
    }
}
