//! The allow-list in `DIR/flnode.toml`, edited in place by `flnode peers
//! add` and `remove`: the rest of the file (other settings, comments,
//! order) stays as the user wrote it. Entries are node IDs as strings, or
//! `{ id = "…", name = "…" }` tables for named peers.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use flproto::NodeId;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Value};

use crate::allow_list::{AllowedPeer, PeerName};
use crate::settings::config_file;

/// What an edit did to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Added,
    Replaced,
    Removed,
    Absent,
}

/// Adds `peer`, or replaces its entry (a new name, or none).
pub fn add(dir: &Path, peer: &AllowedPeer) -> anyhow::Result<Edit> {
    edit(dir, |entries| {
        let value = entry_value(peer);
        match position(entries, &peer.id)? {
            Some(at) => {
                entries.replace(at, value);
                Ok(Edit::Replaced)
            }
            None => {
                entries.push(value);
                Ok(Edit::Added)
            }
        }
    })
}

/// Removes `id`'s entry, if there is one.
pub fn remove(dir: &Path, id: &NodeId) -> anyhow::Result<Edit> {
    edit(dir, |entries| match position(entries, id)? {
        Some(at) => {
            entries.remove(at);
            Ok(Edit::Removed)
        }
        None => Ok(Edit::Absent),
    })
}

/// The managed peers the file lists (names unchecked entries are skipped
/// by `flnode up`'s own check, which reports them).
pub fn list(dir: &Path) -> anyhow::Result<Vec<AllowedPeer>> {
    let document = read(dir)?;
    let Some(entries) = document.get("peers").and_then(Item::as_array) else {
        return Ok(Vec::new());
    };
    Ok(entries
        .iter()
        .filter_map(|entry| {
            let (id, name) = parts(entry)?;
            Some(AllowedPeer {
                id: crate::allow_list::parse_peer_id(id).ok()?,
                name: name.and_then(|name| PeerName::parse(name).ok()),
            })
        })
        .collect())
}

fn read(dir: &Path) -> anyhow::Result<DocumentMut> {
    let path = config_file(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    text.parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

/// Applies `change` to the `peers` list and writes the file back, through
/// a temporary file renamed over it (never half written).
fn edit(dir: &Path, change: impl FnOnce(&mut Array) -> anyhow::Result<Edit>) -> anyhow::Result<Edit> {
    let path = config_file(dir);
    let mut document = read(dir)?;
    if !document.contains_key("peers") {
        document.insert("peers", Item::Value(Value::Array(Array::new())));
    }
    let Some(entries) = document.get_mut("peers").and_then(Item::as_array_mut) else {
        bail!("`peers` in {} is not a list", path.display());
    };
    let edit = change(entries)?;
    if matches!(edit, Edit::Absent) {
        return Ok(edit);
    }
    entries.fmt();
    let temporary = path.with_extension("toml.new");
    let mut file =
        std::fs::File::create(&temporary).with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(document.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(edit)
}

/// Where `id`'s entry is; an `ID=ADDR` entry means the file is in manual
/// mode, where `flnode peers` has nothing to add.
fn position(entries: &Array, id: &NodeId) -> anyhow::Result<Option<usize>> {
    let mut found = None;
    for (at, entry) in entries.iter().enumerate() {
        let Some((text, _)) = parts(entry) else {
            bail!("flnode.toml: a `peers` entry is neither an ID nor {{ id = \"…\", name = \"…\" }}");
        };
        if text.contains('=') {
            bail!(
                "flnode.toml lists ID=ADDR peers (manual mode, your own WireGuard); flnode peers manages \
                 only bare node IDs"
            );
        }
        if text.trim().parse::<NodeId>().ok() == Some(*id) {
            found = Some(at);
        }
    }
    Ok(found)
}

/// An entry's ID text and name, as written.
fn parts(entry: &Value) -> Option<(&str, Option<&str>)> {
    match entry {
        Value::String(text) => Some((text.value().as_str(), None)),
        Value::InlineTable(table) => Some((table.get("id")?.as_str()?, table.get("name").and_then(Value::as_str))),
        _ => None,
    }
}

fn entry_value(peer: &AllowedPeer) -> Value {
    match &peer.name {
        None => Value::from(peer.id.to_string()),
        Some(name) => {
            let mut table = InlineTable::new();
            table.insert("id", Value::from(peer.id.to_string()));
            table.insert("name", Value::from(name.as_str()));
            Value::InlineTable(table)
        }
    }
}

#[cfg(test)]
mod tests {
    use flproto::identity::NodeKey;

    use super::*;

    fn peer(seed: u8, name: Option<&str>) -> AllowedPeer {
        AllowedPeer {
            id: NodeKey::from_seed([seed; 32]).id(),
            name: name.map(|n| PeerName::parse(n).unwrap()),
        }
    }

    #[test]
    fn adding_and_removing_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let original = "# my node\nsignal = \"wss://signal.example\" # the server\n\nname = \"laptop\"\n";
        std::fs::write(config_file(dir.path()), original).unwrap();
        assert_eq!(add(dir.path(), &peer(2, None)).unwrap(), Edit::Added);
        assert_eq!(add(dir.path(), &peer(3, Some("desk"))).unwrap(), Edit::Added);
        assert_eq!(add(dir.path(), &peer(2, Some("phone"))).unwrap(), Edit::Replaced);
        let text = std::fs::read_to_string(config_file(dir.path())).unwrap();
        assert!(text.starts_with(original), "{text}");
        assert_eq!(
            list(dir.path()).unwrap(),
            [peer(2, Some("phone")), peer(3, Some("desk"))]
        );
        // What flnode up reads is what was written.
        let settings = crate::settings::resolve(crate::settings::UpArgs {
            config: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        let crate::tunnel_settings::Tunnel::Managed(managed) = settings.tunnel else {
            panic!("managed");
        };
        assert_eq!(managed.peers, [peer(2, Some("phone")), peer(3, Some("desk"))]);
        assert_eq!(remove(dir.path(), &peer(2, None).id).unwrap(), Edit::Removed);
        assert_eq!(remove(dir.path(), &peer(2, None).id).unwrap(), Edit::Absent);
        assert_eq!(list(dir.path()).unwrap(), [peer(3, Some("desk"))]);
        assert!(std::fs::read_to_string(config_file(dir.path()))
            .unwrap()
            .contains("# the server"));
    }

    #[test]
    fn a_missing_file_is_created_and_a_manual_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(add(dir.path(), &peer(2, None)).unwrap(), Edit::Added);
        assert_eq!(list(dir.path()).unwrap(), [peer(2, None)]);
        std::fs::write(
            config_file(dir.path()),
            format!("peers = [\"{}=127.0.0.1:51900\"]\n", peer(2, None).id),
        )
        .unwrap();
        let error = add(dir.path(), &peer(3, None)).unwrap_err().to_string();
        assert!(error.contains("manual mode"), "{error}");
        std::fs::write(config_file(dir.path()), "peers = 3\n").unwrap();
        assert!(add(dir.path(), &peer(3, None))
            .unwrap_err()
            .to_string()
            .contains("not a list"));
        std::fs::write(config_file(dir.path()), "peers = [\n").unwrap();
        assert!(add(dir.path(), &peer(3, None))
            .unwrap_err()
            .to_string()
            .contains("not valid TOML"));
    }
}
