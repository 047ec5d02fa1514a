//! The node's Ed25519 key on disk: `DIR/node.key`, 64 hex characters of
//! seed, readable by the owner only, never overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flproto::identity::NodeKey;
use flproto::ids::parse_hex32;

pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("node.key")
}

/// Creates a key in `dir` unless one exists; returns the node's key either way.
pub fn init(dir: &Path) -> anyhow::Result<NodeKey> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create config directory {}", dir.display()))?;
    let path = key_path(dir);
    if path.exists() {
        return load(dir);
    }
    let key = NodeKey::generate();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.seed()))?;
    file.sync_all()?;
    Ok(key)
}

/// Loads the key in `dir`; refuses a key file others can read.
pub fn load(dir: &Path) -> anyhow::Result<NodeKey> {
    let path = key_path(dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no key at {} (run `flnode init --config {}`)",
            path.display(),
            dir.display()
        )
    })?;
    let mode = std::fs::metadata(&path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}); run chmod 600 on it",
            path.display(),
            mode & 0o777
        );
    }
    let seed = parse_hex32(text.trim()).with_context(|| format!("{} is not a flnode key", path.display()))?;
    Ok(NodeKey::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_once_with_mode_600_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path()).unwrap();
        let mode = std::fs::metadata(key_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = init(dir.path()).unwrap();
        assert_eq!(first.id(), second.id());
        assert_eq!(load(dir.path()).unwrap().id(), first.id());
    }

    #[test]
    fn refuses_a_world_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        std::fs::set_permissions(key_path(dir.path()), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(dir.path()).unwrap_err().to_string().contains("chmod 600"));
    }
}
