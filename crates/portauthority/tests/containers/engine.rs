//! Podman and go-task as the tests drive them: a storage of the test's own (its images,
//! containers and volumes live in its temporary directory and go with it), the flags these
//! machines need, and the Taskfile's tasks with the same settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Global flags of every podman command here: runc (crun fails on hybrid cgroups), cgroupfs
/// (no systemd), and a storage of the test's own.
fn engine_flags(dir: &Path) -> Vec<String> {
    vec![
        "--runtime".into(),
        "runc".into(),
        "--cgroup-manager".into(),
        "cgroupfs".into(),
        "--root".into(),
        dir.join("storage").display().to_string(),
        "--runroot".into(),
        dir.join("run").display().to_string(),
    ]
}

/// `run` flags: the default ulimits are refused here.
pub const RUN_FLAGS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=4096:4096",
];

/// The repository root, where the Containerfile and the Taskfile are.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A podman storage for one test; everything in it is removed when dropped.
pub struct Engine {
    pub dir: tempfile::TempDir,
    /// The tag of the images this test builds.
    pub tag: String,
}

impl Engine {
    pub fn new() -> Engine {
        let dir = tempfile::Builder::new()
            .prefix("pa-containers-")
            .tempdir()
            .expect("a temporary directory");
        Engine {
            dir,
            tag: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        }
    }

    pub fn web_image(&self) -> String {
        format!("portauthority-web:{}", self.tag)
    }

    pub fn worker_image(&self) -> String {
        format!("portauthority-worker:{}", self.tag)
    }

    /// A podman command with this storage and the machine's flags.
    pub fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(engine_flags(self.dir.path()));
        c
    }

    /// Runs podman with `args`; the output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.podman().args(args).output().expect("run podman")
    }

    /// Runs podman with `args` and panics unless it succeeds; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `name:tag` of every image in this storage.
    pub fn images(&self) -> Vec<String> {
        self.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A go-task command for the repository's Taskfile, with this storage's settings.
    pub fn task(&self, args: &[&str]) -> Command {
        let mut c = Command::new("task");
        // Variables before the first task name are global (after `--` they would be the
        // task's CLI_ARGS).
        c.arg("-d").arg(repo()).args([
            "CONTAINER_ENGINE=podman".to_owned(),
            format!("ENGINE_FLAGS={}", engine_flags(self.dir.path()).join(" ")),
            format!("RUN_FLAGS={}", RUN_FLAGS.join(" ")),
            format!("TAG={}", self.tag),
        ]);
        c.args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a task and panics unless it succeeds; its stdout and stderr.
    pub fn task_ok(&self, c: &mut Command) -> (String, String) {
        let out = c.output().expect("run task");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "{c:?} failed ({:?}):\n{stdout}\n{stderr}",
            out.status
        );
        (stdout, stderr)
    }

    /// The exit code of a container that has stopped, waiting up to `within`.
    pub fn wait_exit(&self, container: &str, within: Duration) -> Option<i64> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            let state = self.ok(&[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                container,
            ]);
            let mut parts = state.split_whitespace();
            if let (Some("exited" | "stopped"), Some(code)) = (parts.next(), parts.next()) {
                return code.parse().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// A container's log, stdout and stderr.
    pub fn logs(&self, container: &str) -> String {
        let out = self.run(&["logs", container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for args in [
            &["rm", "--all", "--force", "--time", "0"][..],
            &["volume", "rm", "--all", "--force"],
            &["rmi", "--all", "--force"],
        ] {
            let _ = self.podman().args(args).output();
        }
        // The storage mounts its own directory; unmount before the directory goes.
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

/// Waits until `url` answers 200, up to `within`.
pub async fn wait_ok(url: &str, within: Duration) -> bool {
    let http = portauthority_client::http_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Ok(r) = http.get(url).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A free TCP port on 127.0.0.1 (free when asked; taken again later only by chance).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}
