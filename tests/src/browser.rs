//! Running the browser tests' node scripts (`tests/browser/*.mjs`, which
//! drive Debian's chromium with playwright-core): whether what they need is
//! installed, and running one with a time limit, inside a network
//! namespace if asked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The whole browser run: launching chromium, two pages, connection,
/// messages and a 24 MiB throughput test.
pub const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(180);

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Whether chromium, node and `npm ci --prefix tests/browser` are there.
pub fn browser_available(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = browser_dir().join("node_modules/playwright-core").exists();
    let missing: Vec<&str> = [
        (!chromium().exists()).then_some("chromium"),
        (!node).then_some("node"),
        (!playwright).then_some("playwright-core (npm ci --prefix tests/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs {}, and CI=true forbids skipping", missing.join(", "));
    }
    eprintln!(
        "{test}: SKIPPED, missing {} (scripts/test.sh installs them)",
        missing.join(", ")
    );
    false
}

/// Runs `tests/browser/<script>` with node (inside namespace `ns` if
/// given), killing it and its chromium if it outlives
/// [`BROWSER_RUN_LIMIT`]; its exit status, stdout and stderr, both printed.
pub async fn run_script(
    script: &str,
    env: &[(&str, String)],
    ns: Option<&str>,
) -> (std::process::ExitStatus, String, String) {
    run_script_within(script, env, ns, BROWSER_RUN_LIMIT).await
}

/// [`run_script`] with another time limit (benchmarks run longer).
pub async fn run_script_within(
    script: &str,
    env: &[(&str, String)],
    ns: Option<&str>,
    limit: Duration,
) -> (std::process::ExitStatus, String, String) {
    let mut command = match ns {
        Some(ns) => {
            let mut command = tokio::process::Command::new("ip");
            command.args(["netns", "exec", ns, "node"]);
            command
        }
        None => tokio::process::Command::new("node"),
    };
    command
        .arg(browser_dir().join(script))
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("CHROMIUM", chromium())
        .env("ARTIFACTS", browser_dir().join("artifacts"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so chromium goes with it on a timeout.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start node");
    let pgid = child.id().expect("pid") as i32;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let run = async {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        (child.wait().await, out, err)
    };
    let Ok((status, out, err)) = tokio::time::timeout(limit, run).await else {
        // SAFETY: kill(2) on the group this test created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        panic!("the browser run took longer than {limit:?}");
    };
    println!("{out}");
    eprintln!("{err}");
    (status.expect("wait for node"), out, err)
}
