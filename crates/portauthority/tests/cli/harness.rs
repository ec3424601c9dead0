//! A server per test, and the CLI run as a child process against it.

use portauthority_client::Client;
use portauthority_testkit::server::Server;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portauthority"))
}

/// A `portauthority serve` on its own database, and the CLI pointed at it.
pub struct Env {
    pub server: Server,
    pub client: Client,
    /// Holds the SQLite file of a server started here.
    _dir: Option<TempDir>,
}

impl Env {
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}", dir.path().join("cli.db").display());
        let server = Server::start(binary(), &db, dir.path(), "serve", None).await;
        Env {
            client: server.client(),
            server,
            _dir: Some(dir),
        }
    }

    /// The CLI against a server started elsewhere.
    pub fn over(server: Server) -> Env {
        Env {
            client: server.client(),
            server,
            _dir: None,
        }
    }

    /// Runs `portauthority ARGS` against this server (through PORTAUTHORITY_URL).
    pub fn run(&self, args: &[&str]) -> Run {
        run_with(args, &[("PORTAUTHORITY_URL", &self.server.base)])
    }

    /// Creates a job through the CLI (`--type t --namespace ns` unless `args` say
    /// otherwise, and `--tasks N`) and returns its id.
    pub fn job(&self, tasks: usize, args: &[&str]) -> String {
        let n = tasks.to_string();
        let mut all = vec!["job", "create", "--tasks", &n];
        if !args.contains(&"--type") {
            all.extend(["--type", "t"]);
        }
        if !args.contains(&"--namespace") {
            all.extend(["--namespace", "ns"]);
        }
        all.extend(args);
        str_of(&self.json(&all), "/job/id").to_owned()
    }

    /// Runs with `--output json` and parses stdout; panics unless it exits 0.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let run = self.run(&all);
        run.assert_code(0);
        run.json()
    }
}

/// Runs the binary with only the given PORTAUTHORITY_* variables set, so that the
/// environment of whoever runs the tests cannot point the CLI elsewhere.
pub fn run_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTAUTHORITY_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out: Output = cmd.output().expect("run the portauthority binary");
    Run {
        args: args.join(" "),
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// One finished run of the CLI.
pub struct Run {
    pub args: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "`portauthority {}` exited {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`portauthority {}` printed no JSON ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }

    /// The table's rows (header first), each split on runs of two or more spaces.
    pub fn table(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .take_while(|l| {
                !l.starts_with("page ") && !l.starts_with("no ") && !l.starts_with("added ")
            })
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }

    /// The value of `key:` in a `key: value` view.
    pub fn field(&self, key: &str) -> String {
        let prefix = format!("{key}:");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key:?} in:\n{}", self.stdout))
    }
}

/// The column of `title` in a table's header.
pub fn column(table: &[Vec<String>], title: &str) -> usize {
    table[0]
        .iter()
        .position(|c| c == title)
        .unwrap_or_else(|| panic!("no column {title} in {:?}", table[0]))
}

pub fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}
