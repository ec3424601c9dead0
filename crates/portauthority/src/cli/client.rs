//! What the client commands (`job`, `task`, `history`) share: the connection flags, the
//! output mode, the exit codes, and how a failure is told on stderr.
//!
//! The commands speak to a server only through `portauthority_client`; nothing here
//! builds a URL or reads a status code by hand.

use clap::{Args, ValueEnum};
use portauthority_client::{Client, ErrorKind};
use std::process::ExitCode;
use std::time::Duration;

/// Where `--help` lists the flags every client command takes.
const HEADING: &str = "Server and output";

/// Where the server is and how to talk to it; accepted before or after the subcommand.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server's root URL.
    #[arg(
        long,
        env = "PORTAUTHORITY_URL",
        default_value = "http://127.0.0.1:8080",
        value_parser = server_url,
        global = true,
        help_heading = HEADING
    )]
    pub url: String,
    /// API key, sent as `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        env = "PORTAUTHORITY_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = HEADING
    )]
    pub token: Option<String>,
    /// How results are printed: aligned tables for people, or the API's JSON for scripts.
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value_t = Output::Table,
        global = true,
        help_heading = HEADING
    )]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The exit codes of the client commands (DESIGN.md "CLI exit codes"). Usage errors (2)
/// are clap's own exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Unexpected = 1,
    NotFound = 3,
    Conflict = 4,
    Invalid = 5,
    Unavailable = 6,
    Unauthorized = 7,
    /// `job watch`: the job ended failed.
    JobFailed = 8,
    /// `job watch`: the job ended cancelled.
    JobCancelled = 9,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

impl From<ErrorKind> for Exit {
    fn from(k: ErrorKind) -> Exit {
        match k {
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::Conflict => Exit::Conflict,
            ErrorKind::Invalid => Exit::Invalid,
            ErrorKind::Unauthorized => Exit::Unauthorized,
            ErrorKind::Unavailable => Exit::Unavailable,
            ErrorKind::Other => Exit::Unexpected,
        }
    }
}

/// What a client command is run with.
pub struct Ctx {
    pub client: Client,
    pub output: Output,
}

impl ClientArgs {
    pub fn ctx(&self) -> anyhow::Result<Ctx> {
        let http = portauthority_client::http_builder()
            // Connecting fails fast (a wrong --url should not hang); answers may take as
            // long as the server's own request timeout allows.
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Ctx {
            client: Client::with_http(http, self.url.clone()).with_token(self.token.clone()),
            output: self.output,
        })
    }
}

/// Runs a client command: its outcome becomes the process's exit code, and a failure is
/// told on stderr, one line per problem.
pub async fn run<F>(args: &ClientArgs, command: impl FnOnce(Ctx) -> F) -> ExitCode
where
    F: Future<Output = anyhow::Result<Exit>>,
{
    let outcome = match args.ctx() {
        Ok(ctx) => command(ctx).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(e) => report(&e, &args.url).into(),
    }
}

/// Prints `e` on stderr and gives the exit code it stands for.
fn report(e: &anyhow::Error, url: &str) -> Exit {
    let Some(api) = e.downcast_ref::<portauthority_client::Error>() else {
        eprintln!("error: {e:#}");
        return Exit::Unexpected;
    };
    let kind = api.kind();
    match (api.problem(), api) {
        (Some(p), _) => {
            match p.errors.as_deref() {
                // The detail of a validation problem repeats the field errors: say each once.
                Some(errors) if !errors.is_empty() => {
                    eprintln!("error: {} {}", p.status, p.title);
                    for fe in errors {
                        eprintln!("  {}: {}", fe.field, fe.message);
                    }
                }
                _ => eprintln!("error: {} {}: {}", p.status, p.title, p.detail),
            }
        }
        (None, portauthority_client::Error::Transport(t)) if kind == ErrorKind::Unavailable => {
            eprintln!("error: cannot reach the server at {url}: {}", root_cause(t));
            eprintln!(
                "hint: start one with `portauthority serve`, or point --url (PORTAUTHORITY_URL) at it"
            );
        }
        (None, other) => eprintln!("error: {}", cause_chain(other)),
    }
    if kind == ErrorKind::Unauthorized {
        eprintln!("hint: pass an API key with --token or PORTAUTHORITY_TOKEN");
    }
    kind.into()
}

/// An error and its sources on one line: reqwest's own message ("error sending request")
/// says little without the cause beneath it ("Connection refused").
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The innermost cause, which says why a connection failed ("Connection refused (os error
/// 111)") without the layers above it.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

/// `--url`: an http(s) URL. `localhost:8080` alone parses as a URL of scheme `localhost`,
/// which is never what was meant.
fn server_url(raw: &str) -> Result<String, String> {
    let hint = || format!("expected a URL such as http://{raw}");
    match reqwest::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
            Ok(raw.trim_end_matches('/').to_owned())
        }
        Ok(_) | Err(_) if !raw.contains("://") => Err(hint()),
        Ok(u) => Err(format!(
            "unsupported scheme {:?}: use http or https",
            u.scheme()
        )),
        Err(e) => Err(format!("{e}: {}", hint())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_needs_an_http_scheme() {
        assert_eq!(
            server_url("http://127.0.0.1:8080/").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert_eq!(
            server_url("https://pa.example").as_deref(),
            Ok("https://pa.example")
        );
        let err = server_url("localhost:8080").expect_err("no scheme");
        assert!(err.contains("http://localhost:8080"), "{err}");
        assert!(server_url("ftp://host").is_err());
        assert!(server_url("http://").is_err());
    }
}
