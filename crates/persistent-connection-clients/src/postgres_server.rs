//! Throw-away PostgreSQL clusters for tests and examples: `initdb` in a temporary
//! directory, `pg_ctl start` on 127.0.0.1, and everything stopped and deleted on drop.
//!
//! The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, package `postgresql`).
//! `initdb` refuses to run as root, so as root the cluster is made and run as the
//! `postgres` user (with `runuser`) in a directory owned by that user.
//!
//! The functions here block (they wait for `initdb` and `pg_ctl`): call them from
//! `tokio::task::spawn_blocking` in async code.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The directory of the newest installed PostgreSQL's binaries (`initdb`, `pg_ctl`), or
/// why there is none.
///
/// # Errors
/// A message saying what is missing.
pub fn binaries() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no /usr/lib/postgresql ({e})"))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    let (_, bin) = found
        .pop()
        .ok_or("no /usr/lib/postgresql/*/bin/initdb and pg_ctl")?;
    if is_root() {
        if user_id("-u").is_none() {
            return Err("running as root and there is no `postgres` user".into());
        }
        if !Path::new("/usr/sbin/runuser").exists() && !Path::new("/sbin/runuser").exists() {
            return Err("running as root and there is no `runuser`".into());
        }
    }
    Ok(bin)
}

/// For a test that needs PostgreSQL: `true` when it can run. Otherwise it prints that
/// `test` skips and returns `false`, except when the environment variable `CI` is `true`,
/// where it panics: CI must never pass by skipping.
///
/// # Panics
/// Under `CI=true` when PostgreSQL cannot be run.
pub fn available_or_skip(test: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    decide(test, binaries().map(drop), ci)
}

/// The decision of [`available_or_skip`], apart from the environment.
fn decide(test: &str, available: Result<(), String>, ci: bool) -> bool {
    match available {
        Ok(()) => true,
        Err(why) if ci => {
            panic!("{test}: PostgreSQL is required under CI=true: {why} (install `postgresql`)")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why} (install Debian's `postgresql` package)");
            false
        }
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `id -u postgres` or `id -g postgres`.
fn user_id(flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// A PostgreSQL cluster of its own: data directory, socket directory and log in a fresh
/// directory under `/tmp`, listening on 127.0.0.1 at a port of its own, user `postgres`
/// with trust authentication, database `postgres`. Dropping it stops the server (mode
/// immediate) and deletes the directory, also when a test fails.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PgCluster {
    /// Makes a cluster with `initdb` (not started) that will listen on `port`.
    ///
    /// # Errors
    /// When the binaries are missing or `initdb` fails (its output is in the error).
    pub fn create(port: u16) -> io::Result<Self> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let bin = binaries().map_err(io::Error::other)?;
        let root = PathBuf::from(format!(
            "/tmp/persistent-connection-pg-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir(&root)?;
        let as_postgres = is_root();
        // From here on, Drop deletes the directory.
        let cluster = PgCluster {
            bin,
            root,
            port,
            as_postgres,
            running: false,
        };
        if as_postgres {
            let uid = user_id("-u").ok_or_else(|| io::Error::other("no postgres user"))?;
            let gid = user_id("-g").ok_or_else(|| io::Error::other("no postgres group"))?;
            std::os::unix::fs::chown(&cluster.root, Some(uid), Some(gid))?;
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
                "--no-locale".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        )?;
        Ok(cluster)
    }

    /// Makes a cluster on a free port and starts it.
    ///
    /// # Errors
    /// As [`create`](Self::create) and [`start`](Self::start).
    pub fn create_and_start() -> io::Result<Self> {
        let mut cluster = Self::create(crate::free_port())?;
        // A port is free only until someone binds it, and `initdb` takes seconds: the port
        // is chosen again right before the server binds it.
        cluster.port = crate::free_port();
        cluster.start()?;
        Ok(cluster)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory that holds everything of this cluster (deleted on drop).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the server and returns once it accepts connections (`pg_ctl start -w`).
    ///
    /// # Errors
    /// When `pg_ctl` fails; the error holds the server's log.
    pub fn start(&mut self) -> io::Result<()> {
        let options = format!(
            "-k {} -h 127.0.0.1 -p {} -c fsync=off -c full_page_writes=off",
            self.root.display(),
            self.port
        );
        let (data, log) = (self.data(), self.root.join("log"));
        let started: io::Result<()> = self
            .run(
                "pg_ctl",
                &[
                    "start".as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "30".as_ref(),
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    options.as_ref(),
                ],
            )
            .map(drop);
        // Even a failed start may have left a server running: stop it on drop.
        self.running = true;
        started.map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            io::Error::other(format!("{e}\nserver log:\n{log}"))
        })
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected, the server
    /// shuts down cleanly) and returns once it is down.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn stop(&mut self) -> io::Result<()> {
        self.stop_with("fast")
    }

    fn stop_with(&mut self, mode: &str) -> io::Result<()> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
            ],
        )?;
        self.running = false;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Runs one of the binaries, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> io::Result<Output> {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command.args(args).current_dir(&self.root).output()?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(io::Error::other(format!(
                "{} failed ({}): {}{}",
                program.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_with("immediate");
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn missing_postgres_skips_outside_ci() {
        assert!(decide("t", Ok(()), false));
        assert!(decide("t", Ok(()), true));
        assert!(!decide("t", Err("no initdb".into()), false));
    }

    #[test]
    #[should_panic(expected = "PostgreSQL is required under CI=true: no initdb")]
    fn missing_postgres_fails_under_ci() {
        decide("t", Err("no initdb".into()), true);
    }
}
