//! flsignal restarts itself once at start with glibc's malloc cache off
//! (`flsignal/src/malloc_tunable.rs`): the real binary, its environment,
//! argv and file descriptors as `/proc` shows them after the restart.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;

use e2e::{binary, Client, ServerProcess, PATIENCE};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The process's environment as the kernel holds it, `\0`-separated. glibc
/// may split `GLIBC_TUNABLES` there at its `:`s, so tests look for each
/// tunable on its own.
fn environment(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|&byte| byte == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

fn mentions(environment: &[String], needle: &str) -> bool {
    environment.iter().any(|entry| entry.contains(needle))
}

/// The fd number the test hands to flsignal, above any it opens itself
/// before the restart.
const INHERITED_FD: i32 = 100;

#[tokio::test]
async fn restarts_once_with_the_tcache_off_keeping_pid_argv_environment_and_fds() {
    let (reader, _writer) = std::io::pipe().unwrap();
    let reader = OwnedFd::from(reader);
    let pipe_inode = std::fs::read_link(format!("/proc/self/fd/{}", reader.as_raw_fd())).unwrap();
    let source = reader.as_raw_fd();
    let args = ["--listen", "127.0.0.1:0", "--stun-listen", "off", "--max-list-len", "7"];
    let mut command = tokio::process::Command::new(binary("flsignal").unwrap());
    command
        .args(args)
        .env("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
        .env("FLSIGNAL_TEST_MARK", "kept")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: dup2 is async-signal-safe; the new fd has no CLOEXEC, as an
    // fd from systemd or a supervisor would not.
    unsafe {
        command.pre_exec(move || match libc::dup2(source, INHERITED_FD) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let mut child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("flsignal ready") {
                return;
            }
        }
        panic!("flsignal exited before it was ready");
    })
    .await
    .expect("flsignal never got ready (a restart loop?)");

    let env = environment(pid);
    assert!(mentions(&env, "glibc.malloc.tcache_count=0"), "{env:?}");
    assert!(mentions(&env, "glibc.malloc.arena_max=2"), "{env:?}");
    assert!(env.contains(&"FLSIGNAL_MALLOC_REEXECUTED=1".to_owned()), "{env:?}");
    assert!(env.contains(&"FLSIGNAL_TEST_MARK=kept".to_owned()), "{env:?}");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|&byte| byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    assert_eq!(argv[1..], args.map(str::to_owned), "{argv:?}");
    let inherited = std::fs::read_link(format!("/proc/{pid}/fd/{INHERITED_FD}")).unwrap();
    assert_eq!(inherited, pipe_inode);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_restarted_server_serves_nodes() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    assert!(mentions(&environment(server.pid()), "glibc.malloc.tcache_count=0"));
    let (_client, list) = Client::join(&server.url(), &NodeKey::generate(), &AnnounceAuth::Fledger)
        .await
        .unwrap();
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test]
async fn keep_malloc_tcache_leaves_the_environment_alone() {
    for (args, env) in [
        (&["--keep-malloc-tcache"][..], &[][..]),
        (&[][..], &[("FLSIGNAL_KEEP_MALLOC_TCACHE", "true")][..]),
    ] {
        let server = ServerProcess::start(args, env).await.unwrap();
        let env = environment(server.pid());
        assert!(!mentions(&env, "GLIBC_TUNABLES"), "{env:?}");
        assert!(!mentions(&env, "FLSIGNAL_MALLOC_REEXECUTED"), "{env:?}");
    }
}

#[tokio::test]
async fn an_operators_own_tcache_count_is_kept_without_a_restart() {
    let server = ServerProcess::start(&[], &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=3")])
        .await
        .unwrap();
    let env = environment(server.pid());
    assert!(
        env.contains(&"GLIBC_TUNABLES=glibc.malloc.tcache_count=3".to_owned()),
        "{env:?}"
    );
    assert!(!mentions(&env, "tcache_count=0"), "{env:?}");
    assert!(!mentions(&env, "FLSIGNAL_MALLOC_REEXECUTED"), "{env:?}");
}
