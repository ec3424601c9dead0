//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`),
//! for the dashboard's tests.
//!
//! Each [`Browser`] runs its own chromedriver in a process group of its own, with its own
//! profile directory; dropping it kills the whole group, Chromium included, even when the
//! test panicked before closing its session.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A phone's viewport, CSS pixels.
pub const PHONE: (u32, u32) = (390, 844);
pub const DESKTOP: (u32, u32) = (1280, 900);

/// Liveness bound for anything the page should do by itself.
const WAIT: Duration = Duration::from_secs(15);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Light,
    Dark,
}

impl Browser {
    /// A browser with a window of `size`, or None (after saying so) when Chromium or its
    /// driver is not installed.
    pub async fn start(size: (u32, u32), scheme: Scheme) -> Option<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                portauthority_testkit::skip::because(&format!(
                    "{bin} is missing (apt-get install chromium chromium-driver)"
                ));
                return None;
            }
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so that Chromium (its child) goes with it.
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let guard = DriverGuard(Some(driver));
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--no-first-run".into(),
            format!("--window-size={},{}", size.0, size.1),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if scheme == Scheme::Dark {
            args.push("--force-dark-mode".into());
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(_) if started.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        let browser = Browser {
            client,
            driver: guard.take(),
            _profile: profile,
        };
        // The viewport, not the window, is what the page sees.
        browser.fit_viewport(size).await;
        Some(browser)
    }

    /// Resizes the window until the page's viewport is `size`.
    pub async fn fit_viewport(&self, size: (u32, u32)) {
        self.client
            .set_window_size(size.0, size.1)
            .await
            .expect("resize");
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]")
            .await;
        let dw = size.0 as i64 - inner[0].as_i64().unwrap_or(size.0 as i64);
        let dh = size.1 as i64 - inner[1].as_i64().unwrap_or(size.1 as i64);
        if dw != 0 || dh != 0 {
            self.client
                .set_window_size((size.0 as i64 + dw) as u32, (size.1 as i64 + dh) as u32)
                .await
                .expect("resize");
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `expr` (a JavaScript expression) is truthy; panics with `what` if it
    /// never is, with the page's text to show why.
    pub async fn wait(&self, what: &str, expr: &str) -> Value {
        let script = format!("return ({expr})");
        let started = Instant::now();
        loop {
            let v = self.js(&script).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if started.elapsed() > WAIT {
                let text = self.js("return document.body.innerText").await;
                panic!("timed out waiting for {what} ({expr}); the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// The page's path and query.
    pub async fn location(&self) -> String {
        self.js("return location.pathname + location.search")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot of the whole page (the window grown to its height) as
    /// `<dir>/<name>.png`, the directory from `PORTAUTHORITY_TEST_SCREENSHOTS` or a
    /// folder in the temporary directory. Returns the file.
    pub async fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        let height = self
            .js("return Math.max(document.documentElement.scrollHeight, window.innerHeight)")
            .await
            .as_u64()
            .unwrap_or(900) as u32;
        self.fit_viewport((width, height.min(4000))).await;
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::env::var_os("PORTAUTHORITY_TEST_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("portauthority-screenshots"));
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, png).expect("screenshot written");
        file
    }

    /// Ends the WebDriver session, then (in drop) the processes.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Kills chromedriver's process group (Chromium is in it) and reaps chromedriver.
fn kill_group(driver: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .stderr(Stdio::null())
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}

/// Kills chromedriver if the session never starts.
struct DriverGuard(Option<Child>);

impl DriverGuard {
    fn take(mut self) -> Child {
        self.0.take().expect("driver")
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_group(&mut c);
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("address").port()
}
