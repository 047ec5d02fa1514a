//! flbench-page: the page's throughput test (over its unordered `wg`
//! channel) with its message size and in-flight amount varied, browser ↔
//! browser (two headless Chromium pages on loopback) and browser ↔ flnode
//! (a page in one network namespace, an flnode with `--test-peers 1` in
//! another), driven by `tests/browser/sweep.mjs`.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_page [rounds] [browser|flnode|both]
//!
//! MESSAGES and IN_FLIGHT (comma-separated bytes) choose the settings;
//! BYTES, WARMUP, IDLE_MS and SPLIT are passed on (see sweep.mjs).
//! Prints one line per run and, per setting, the median (min–max) of the
//! rate the receiver counted and of the share lost.

use std::time::Duration;

use anyhow::{bail, Context};
use e2e::browser::{browser_available, run_script_within};
use e2e::flnode::NodePair;
use e2e::netns::{namespaces_available, Testbed};
use e2e::ServerProcess;

/// One sweep (every setting, every round) of one pair of ends.
const SWEEP_LIMIT: Duration = Duration::from_secs(1800);
/// The node's byte budget for its test peer: more than a whole sweep.
const TEST_PEER_BUDGET: u64 = 1 << 40;

/// MESSAGES, IN_FLIGHT and ROUNDS passed on to sweep.mjs.
fn sweep_env(url: String, rounds: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![("FLSIGNAL_URL", url), ("ROUNDS", rounds.to_owned())];
    for name in ["MESSAGES", "IN_FLIGHT", "BYTES", "WARMUP", "IDLE_MS", "SPLIT"] {
        if let Ok(value) = std::env::var(name) {
            env.push((name, value));
        }
    }
    env
}

async fn browser_to_browser(rounds: &str) -> anyhow::Result<()> {
    println!("== browser ↔ browser (two pages, one Chromium, loopback)");
    let server = ServerProcess::start(&[], &[]).await?;
    let env = sweep_env(format!("http://{}/", server.addr), rounds);
    let (status, _, _) = run_script_within("sweep.mjs", &env, None, SWEEP_LIMIT).await;
    if !status.success() {
        bail!("the browser ↔ browser sweep failed");
    }
    Ok(())
}

async fn browser_to_flnode(rounds: &str) -> anyhow::Result<()> {
    println!("== browser ↔ flnode (page on host a, flnode on host b)");
    let testbed = Testbed::new()?;
    let budget = TEST_PEER_BUDGET.to_string();
    let pair = NodePair::start_with_args(&testbed, &["--test-peers", "1", "--test-peer-budget", &budget]).await?;
    pair.wait_registered(1).await?;
    let mut env = sweep_env(format!("http://127.0.0.1:{}/", pair.port), rounds);
    env.push(("FLNODE_ID", pair.ids[1].clone()));
    let (status, _, _) = run_script_within("sweep.mjs", &env, Some(&testbed.a), SWEEP_LIMIT).await;
    if !status.success() {
        bail!("the browser ↔ flnode sweep failed");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds = args.next().unwrap_or_else(|| "3".to_owned());
    rounds.parse::<u32>().context("rounds: a number")?;
    let which = args.next().unwrap_or_else(|| "both".to_owned());
    if !browser_available("flbench_page") {
        bail!("needs chromium, node and playwright-core");
    }
    if which == "browser" || which == "both" {
        browser_to_browser(&rounds).await?;
    }
    if (which == "flnode" || which == "both") && namespaces_available("flbench_page") {
        browser_to_flnode(&rounds).await?;
    }
    Ok(())
}
