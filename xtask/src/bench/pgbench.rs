//! A throwaway PostgreSQL cluster for `pgbench -S` (Debian's package, from
//! `cargo xtask setup`): made in a directory under /dev/shm, run as the
//! `postgres` user (initdb refuses root) on a unix socket in that directory
//! only, and stopped and removed when dropped, on error too.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::measure::measured;

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Whether the server was started (and so must be stopped).
    started: bool,
}

impl Cluster {
    /// initdb, start, and `pgbench -i` at scale 1.
    pub fn start() -> anyhow::Result<Cluster> {
        let bin = crate::realworld::postgres_bin()?;
        let dir =
            Path::new(super::SHM).join(format!("reaper-trace-bench-pg-{}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on, dropping it removes the directory.
        let mut cluster = Cluster {
            dir,
            bin,
            started: false,
        };
        quiet(Command::new("chown").arg("postgres:").arg(&cluster.dir))?;
        let data = cluster.dir.join("data");
        quiet(cluster.as_postgres("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))?;
        let options = format!(
            "-k {} -c listen_addresses= -c fsync=off",
            cluster.dir.display()
        );
        cluster.started = true;
        let log = cluster.dir.join("server.log");
        // Not through a pipe: the server it leaves running would hold it.
        let start = measured(
            cluster
                .as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-o", &options, "start"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        if let Err(e) = start {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("starting the bench's PostgreSQL: {e:#}; its log:\n{log}");
        }
        quiet(cluster.pgbench().args(["-i", "-q", "postgres"]))?;
        Ok(cluster)
    }

    /// Transactions per second of `pgbench -S` (select only) for `seconds`,
    /// with two clients (one per core).
    pub fn select_tps(&self, seconds: u32) -> anyhow::Result<f64> {
        let out = self
            .pgbench()
            .args(["-S", "-c", "2", "-j", "2", "-T", &seconds.to_string()])
            .arg("postgres")
            .stdin(Stdio::null())
            .output()
            .context("running pgbench")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "pgbench -S failed ({}): {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tps(&text).with_context(|| format!("no `tps = ` line in pgbench's output: {text}"))
    }

    fn pgbench(&self) -> Command {
        let mut c = Command::new(self.bin.join("pgbench"));
        c.arg("-h").arg(&self.dir).args(["-U", "postgres"]);
        c
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let stopped = quiet(
                self.as_postgres("pg_ctl")
                    .arg("-D")
                    .arg(self.dir.join("data"))
                    .args(["-m", "immediate", "-w", "stop"]),
            );
            if let Err(e) = stopped {
                eprintln!("xtask bench: warning: stopping the bench's PostgreSQL: {e:#}");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("xtask bench: warning: removing {}: {e}", self.dir.display());
        }
    }
}

/// Runs a set-up command to its end; its output only shows if it fails.
fn quiet(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `tps = 1234.5 (without initial connection time)` from pgbench's report.
fn tps(report: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tps_line() {
        let report = "number of failed transactions: 0 (0.000%)\nlatency average = 0.101 ms\ninitial connection time = 3.456 ms\ntps = 19741.292818 (without initial connection time)\n";
        assert_eq!(tps(report), Some(19741.292818));
        assert_eq!(tps("pgbench: error: connection failed"), None);
    }
}
