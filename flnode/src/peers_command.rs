//! `flnode peers`: the allow-list of managed mode, listed, added to and
//! taken from. A change is written to flnode.toml (so it lasts) and told
//! to the running node over the control socket (so it applies at once).

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Subcommand;

use crate::allow_list::{parse_peer_id, AllowedPeer, PeerName};
use crate::control::{self, AskError, Reply, Request};
use crate::peers_file::{self, Edit};

#[derive(clap::Args)]
pub struct PeersArgs {
    /// Directory with the node key and flnode.toml.
    #[arg(long, env = "FLNODE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Option<PeersAction>,
}

#[derive(Subcommand)]
enum PeersAction {
    /// Allows a node (its ID from `flnode id` on that machine), or renames
    /// an allowed one.
    Add {
        id: String,
        /// A short name shown in `flnode status`.
        #[arg(long)]
        name: Option<String>,
    },
    /// Takes a node off the allow-list; its WireGuard entry goes at once.
    Remove { id: String },
}

pub async fn run(args: PeersArgs) -> anyhow::Result<()> {
    let Some(config) = args.config else {
        bail!("give --config DIR (or FLNODE_CONFIG): the directory of `flnode init`");
    };
    match args.action {
        None => list(&config).await,
        Some(PeersAction::Add { id, name }) => {
            let me = crate::key_file::load(&config)?.id();
            let peer = AllowedPeer {
                id: parse_peer_id(&id)?,
                name: name.as_deref().map(PeerName::parse).transpose()?,
            };
            if peer.id == me {
                bail!("{} is this node's own ID", peer.id);
            }
            let edit = peers_file::add(&config, &peer)?;
            let request = Request::PeersAdd {
                id: peer.id.to_string(),
                name: peer.name.as_ref().map(|name| name.to_string()),
            };
            let told = tell(&config, request).await?;
            let what = if edit == Edit::Added { "added" } else { "updated" };
            println!(
                "{what} {} ({}) {}; {}",
                peer.id,
                peer.label(),
                peer.addresses(),
                told.words()
            );
            Ok(())
        }
        Some(PeersAction::Remove { id }) => {
            let id = parse_peer_id(&id)?;
            let edit = peers_file::remove(&config, &id)?;
            match (edit, tell(&config, Request::PeersRemove { id: id.to_string() }).await) {
                (Edit::Absent, Ok(Told::NotRunning) | Err(_)) => bail!("{id} is not on the allow-list"),
                (_, Ok(told)) => println!("removed {id}; {}", told.words()),
                (_, Err(error)) => println!("removed {id} from flnode.toml; the running node: {error:#}"),
            }
            Ok(())
        }
    }
}

/// Whether the change reached a running node.
enum Told {
    Applied,
    NotRunning,
}

impl Told {
    fn words(&self) -> &'static str {
        match self {
            Told::Applied => "the running node has it",
            Told::NotRunning => "no node is running (it applies at the next start)",
        }
    }
}

/// Tells the running node, if there is one.
async fn tell(config: &std::path::Path, request: Request) -> anyhow::Result<Told> {
    match control::ask(config, &request).await {
        Ok(Reply::Ok(_)) => Ok(Told::Applied),
        Ok(Reply::Error(error)) => Err(anyhow!("{error}")),
        Err(AskError::NotRunning(_)) => Ok(Told::NotRunning),
        Err(error) => Err(error.into()),
    }
}

/// The running node's list, or the file's when no node runs.
async fn list(config: &std::path::Path) -> anyhow::Result<()> {
    match control::ask(config, &Request::Peers).await {
        Ok(Reply::Ok(list)) => print!("{list}"),
        Ok(Reply::Error(error)) => bail!("{error}"),
        Err(AskError::NotRunning(_)) => {
            for peer in peers_file::list(config)? {
                println!("{} {} {} (no node running)", peer.label(), peer.id, peer.addresses());
            }
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}
