//! A managed node's interface from start to end: removed on SIGTERM and
//! made again on restart, or kept (`--keep-interface`) and adopted by the
//! next start.

use super::*;

#[tokio::test]
async fn a_node_stopped_with_sigterm_removes_its_interface_and_comes_back() {
    if !ready("a_node_stopped_with_sigterm_removes_its_interface_and_comes_back") {
        return;
    }
    let mesh = Mesh::new(2).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    start_all(&mut nodes, &url, |_| USERSPACE.to_vec());
    let to_b = nodes[1].overlay().v6.to_string();
    ping_until(&nodes[0].ns, &to_b).await.unwrap();
    assert!(nodes[1].interface_exists());

    let status = nodes[1].terminate().await.unwrap();
    assert!(status.success(), "{status:?}: {}", nodes[1].log());
    assert!(!nodes[1].interface_exists(), "the interface outlived flnode");
    let socket = format!("/var/run/wireguard/{}.sock", nodes[1].interface);
    assert!(
        !std::path::Path::new(&socket).exists(),
        "wireguard-go's socket outlived flnode"
    );
    let pgrep = std::process::Command::new("pgrep")
        .args(["-f", &format!("wireguard-go -f {}$", nodes[1].interface)])
        .output()
        .unwrap();
    assert!(!pgrep.status.success(), "wireguard-go outlived flnode");

    let peers = ids_except(&nodes, 1);
    nodes[1].start(&url, &peers, USERSPACE).unwrap();
    ping_until(&nodes[0].ns, &to_b).await.unwrap();
    ping_until(&nodes[1].ns, &nodes[0].overlay().v4.to_string())
        .await
        .unwrap();
}

/// `--keep-interface` leaves the interface and its wireguard-go; the next
/// start adopts it (it has this node's key), and a stop without the flag
/// removes it.
#[tokio::test]
async fn a_kept_interface_is_adopted_by_the_next_start() {
    if !ready("a_kept_interface_is_adopted_by_the_next_start") {
        return;
    }
    let mesh = Mesh::new(2).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    let keep = [USERSPACE, &["--keep-interface"]].concat();
    let (a, b) = (nodes[0].id, nodes[1].id);
    nodes[0].start(&url, &[b], &keep).unwrap();
    nodes[1].start(&url, &[a], USERSPACE).unwrap();
    let to_b = nodes[1].overlay().v4.to_string();
    ping_until(&nodes[0].ns, &to_b).await.unwrap();
    // A kept wireguard-go is no one's child: whatever happens below, it
    // does not outlive the test.
    let _reaper = ReapNamespace(nodes[0].ns.clone());
    assert!(nodes[0].terminate().await.unwrap().success());
    assert!(nodes[0].interface_exists(), "--keep-interface removed it");
    let listed = nodes[0].wireguard_peers().unwrap();
    assert_eq!(listed, [nodes[1].wireguard_key().unwrap()]);
    nodes[0].start(&url, &[b], USERSPACE).unwrap();
    ping_until(&nodes[0].ns, &to_b).await.unwrap();
    assert!(nodes[0].log().contains("adopted an existing WireGuard interface"));
    assert!(nodes[0].terminate().await.unwrap().success());
    assert!(
        !nodes[0].interface_exists(),
        "the adopted interface of an earlier run stayed"
    );
}

/// Kills every process left in a namespace when dropped.
struct ReapNamespace(String);

impl Drop for ReapNamespace {
    fn drop(&mut self) {
        let Ok(out) = std::process::Command::new("ip")
            .args(["netns", "pids", &self.0])
            .output()
        else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) of a process in the test's own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
