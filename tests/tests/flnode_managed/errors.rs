//! Managed mode's bad setups: each is one line on stderr that says what to
//! do, a non-zero exit, and nothing left behind (no interface flnode made,
//! no wireguard-go, no control socket of wireguard-go's).

use std::process::Stdio;

use super::*;

/// How `flnode up` ended: its exit status and its stderr (logs off, so
/// that only the error is there).
struct Ended {
    success: bool,
    stderr: String,
}

/// Runs `flnode up` in the mesh's only host with `args`, under `wrapper`
/// (a program and its arguments that run flnode, such as setpriv) and
/// with `env`, until it exits.
async fn up_to_exit(node: &ManagedNode, args: &[&str], wrapper: &[&str], env: &[(&str, &str)]) -> Ended {
    let flnode = e2e::binary("flnode").unwrap();
    let dir = node.dir().to_str().unwrap();
    // By its full path: `env` may take PATH away (flnode's, and so ip's).
    let output = tokio::process::Command::new(program_path("ip"))
        .args(["netns", "exec", &node.ns])
        .args(wrapper)
        .arg(&flnode)
        .args(["up", "--config", dir, "--wg-interface", &node.interface])
        .args(args)
        .env("RUST_LOG", "off")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("flnode did not exit")
        .unwrap();
    Ended {
        success: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Where `program` is in this process's PATH.
fn program_path(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.into())
}

/// One line, starting `flnode: `, containing `says`; a failure exit; and
/// nothing of flnode's left on the host.
fn assert_refused(node: &ManagedNode, ended: &Ended, says: &str) {
    eprintln!("refused as expected: {}", ended.stderr.trim());
    assert!(!ended.success, "flnode succeeded: {}", ended.stderr);
    let lines: Vec<&str> = ended.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {}", ended.stderr);
    assert!(
        lines[0].starts_with("flnode: ") && lines[0].contains(says),
        "{says:?} not in {:?}",
        lines[0]
    );
    let socket = format!("/var/run/wireguard/{}.sock", node.interface);
    assert!(
        !std::path::Path::new(&socket).exists(),
        "wireguard-go's socket left behind"
    );
    let pgrep = std::process::Command::new("pgrep")
        .args(["-f", &format!("wireguard-go -f {}$", node.interface)])
        .output()
        .unwrap();
    assert!(!pgrep.status.success(), "wireguard-go left behind");
    assert!(!node.dir().join("flnode.sock").exists(), "control socket left behind");
}

#[tokio::test]
async fn bad_setups_are_one_line_errors_that_leave_nothing_behind() {
    if !ready("bad_setups_are_one_line_errors_that_leave_nothing_behind") {
        return;
    }
    let mesh = Mesh::new(1).unwrap();
    let node = ManagedNode::init(&mesh.hosts[0], &mesh.wireguard_name(0)).unwrap();
    let peer = flproto::identity::NodeKey::generate().id().to_string();
    // Nobody listens there: registration fails after the interface is up.
    let nowhere = format!("ws://{MESH_SERVER}:1");
    let managed = ["--signal", &nowhere, "--peer", &peer];
    let userspace = [&managed[..], USERSPACE].concat();

    let ended = up_to_exit(&node, &["--signal", &nowhere, "--peer", "laptop"], &[], &[]).await;
    assert_refused(&node, &ended, "is not a node ID");

    let ended = up_to_exit(&node, &userspace, &["setpriv", "--bounding-set", "-net_admin"], &[]).await;
    assert_refused(&node, &ended, "no permission to create network interfaces");
    assert!(!node.interface_exists());

    let no_path = [("PATH", "/nonexistent")];
    let ended = up_to_exit(&node, &userspace, &[], &no_path).await;
    assert_refused(&node, &ended, "wireguard-go is not installed");
    assert!(!node.interface_exists());

    let probe = run_in(&node.ns, &["ip", "link", "add", &node.interface, "type", "wireguard"]);
    match probe {
        Ok(_) => {
            run_in(&node.ns, &["ip", "link", "del", &node.interface]).unwrap();
        }
        Err(_) => {
            // Without kernel WireGuard, `kernel` and `auto` without
            // wireguard-go have nothing to run on.
            let kernel = [&managed[..], &["--wg-backend", "kernel"]].concat();
            let ended = up_to_exit(&node, &kernel, &[], &[]).await;
            assert_refused(&node, &ended, "the kernel has no WireGuard");
            let ended = up_to_exit(&node, &managed, &[], &no_path).await;
            assert_refused(&node, &ended, "no WireGuard here");
            assert!(!node.interface_exists());
        }
    }

    // A name that something else has.
    run_in(&node.ns, &["ip", "link", "add", &node.interface, "type", "bridge"]).unwrap();
    let ended = up_to_exit(&node, &userspace, &[], &[]).await;
    assert_refused(&node, &ended, "exists and is a bridge interface");
    let link = run_in(&node.ns, &["ip", "-d", "link", "show", &node.interface]).unwrap();
    assert!(
        link.contains("bridge"),
        "someone else's interface is left alone: {link}"
    );
    run_in(&node.ns, &["ip", "link", "del", &node.interface]).unwrap();

    // The interface was made, then registration failed: it goes again.
    let ended = up_to_exit(&node, &userspace, &[], &[]).await;
    assert_refused(&node, &ended, "cannot register with");
    assert!(!node.interface_exists(), "the interface outlived the failed start");
}
