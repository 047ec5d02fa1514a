//! The managed interface from start to end: created (or adopted) with the
//! backend asked for, given this node's key, a listen port, its overlay
//! addresses and MTU, and removed again when flnode stops. Every way it
//! can fail at start is a one-line error that says what to do, and leaves
//! nothing behind that flnode created.
//!
//! An existing interface of the name is adopted only if it is free: a
//! WireGuard interface (kernel, or wireguard-go serving this network
//! namespace) that has no private key and no peers (made for flnode by
//! someone else), or one whose private key is this node's own (left by an
//! earlier flnode run with `--keep-interface`, or after a crash). Anything
//! else is someone else's interface and flnode refuses to touch it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use flproto::identity::NodeKey;
use flproto::overlay::OverlayAddresses;

use super::device::{Device, DeviceError};
use super::kernel::KernelDevice;
use super::key::{WgKey, WgSecret};
use super::link::{CreateError, FoundLink, LinkKind, Links};
use super::names::{BackendChoice, InterfaceName};
use super::userspace::{self, Daemon, StartError, UserspaceDevice};

/// How long the device may take to bind its listen port once up.
pub const LISTEN_PORT_WAIT: Duration = Duration::from_secs(3);

/// How flnode came to hold the interface, which decides what it does with
/// it at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// flnode created it: removed at the end.
    Created,
    /// It already had this node's key (an earlier run left it): removed at
    /// the end like one flnode created.
    LeftByEarlierRun,
    /// It was free, made by someone else for flnode: left in place.
    AdoptedFree,
}

/// The interface flnode holds.
pub struct ManagedInterface {
    pub name: InterfaceName,
    pub index: u32,
    /// The device's UDP port on this machine: where flnode's data path
    /// expects WireGuard's datagrams from (127.0.0.1:this).
    pub listen_port: u16,
    /// This node's overlay addresses, as the interface has them.
    pub own: OverlayAddresses,
    pub device: Arc<dyn Device>,
    pub links: Links,
    pub secret: WgSecret,
    pub public: WgKey,
    origin: Origin,
    daemon: Option<Daemon>,
    keep: bool,
}

impl ManagedInterface {
    /// Creates or adopts the interface and sets it up.
    pub async fn open(
        key: &NodeKey,
        name: &InterfaceName,
        choice: BackendChoice,
        own: OverlayAddresses,
        keep: bool,
    ) -> anyhow::Result<ManagedInterface> {
        if !has_net_admin() {
            bail!(
                "no permission to create network interfaces: run flnode as root or give it CAP_NET_ADMIN \
                 (scripts/systemd/flnode.service does)"
            );
        }
        let secret = WgSecret::from(flproto::x25519::secret_of(key));
        let public = WgKey::of(&key.id()).context("this node's key has no WireGuard form")?;
        let links = Links::connect().context("cannot open a netlink socket")?;
        let found = links
            .find(name.as_str())
            .await
            .with_context(|| format!("cannot look up interface {name}"))?;
        let (index, device, daemon, origin) = match found {
            None => {
                let (index, device, daemon) = create(&links, name, choice, keep).await?;
                (index, device, daemon, Origin::Created)
            }
            Some(link) => {
                let (device, origin) = adopt(name, &link, choice, public).await?;
                (link.index, device, None, origin)
            }
        };
        let mut interface = ManagedInterface {
            name: name.clone(),
            index,
            listen_port: 0,
            own,
            device,
            links,
            secret,
            public,
            origin,
            daemon,
            keep: false,
        };
        match interface.set_up().await {
            Ok(()) => {
                interface.keep = keep;
                Ok(interface)
            }
            Err(error) => {
                interface.close().await;
                Err(error)
            }
        }
    }

    /// Key, listen port (kept from an earlier run, else chosen by the
    /// device), MTU, addresses, up.
    async fn set_up(&mut self) -> anyhow::Result<()> {
        let name = &self.name;
        let before = self
            .device
            .view()
            .await
            .with_context(|| format!("cannot read {name}"))?;
        let port = match self.origin {
            Origin::LeftByEarlierRun => before.listen_port,
            Origin::Created | Origin::AdoptedFree => 0,
        };
        self.device
            .set_identity(&self.secret, port)
            .await
            .with_context(|| format!("cannot set the key of {name}"))?;
        self.links
            .configure(self.index, crate::mtu::WIREGUARD_MTU, self.own)
            .await
            .map_err(|error| netlink_error(error, &format!("cannot set up {name}")))?;
        let deadline = tokio::time::Instant::now() + LISTEN_PORT_WAIT;
        self.listen_port = loop {
            let port = self.device.view().await.map_err(device_error)?.listen_port;
            if port != 0 {
                break port;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{name} has no listen port {LISTEN_PORT_WAIT:?} after it came up");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(())
    }

    pub fn backend(&self) -> super::device::Backend {
        self.device.backend()
    }

    /// Removes the interface if flnode made it (or an earlier run did),
    /// unless `--keep-interface`; an adopted free interface stays.
    pub async fn close(self) {
        let name = &self.name;
        if self.keep {
            tracing::info!(interface = %name, "leaving the interface in place (--keep-interface)");
            if let Some(daemon) = self.daemon {
                daemon.detach();
            }
            return;
        }
        if self.origin == Origin::AdoptedFree {
            tracing::info!(interface = %name, "leaving the adopted interface in place");
            return;
        }
        match self.daemon {
            Some(daemon) => daemon.stop().await,
            None => {
                if let Err(error) = self.links.delete(self.index).await {
                    tracing::warn!(interface = %name, "cannot remove the interface: {error}");
                }
            }
        }
    }
}

/// Creates the interface with the backend asked for; `auto` tries the
/// kernel first.
async fn create(
    links: &Links,
    name: &InterfaceName,
    choice: BackendChoice,
    keep: bool,
) -> anyhow::Result<(u32, Arc<dyn Device>, Option<Daemon>)> {
    if choice != BackendChoice::Userspace {
        match links.create_wireguard(name.as_str()).await {
            Ok(index) => {
                let device = match KernelDevice::connect(index) {
                    Ok(device) => device,
                    Err(error) => {
                        let _ = links.delete(index).await;
                        return Err(anyhow!("cannot open a generic netlink socket: {error}"));
                    }
                };
                tracing::info!(interface = %name, "created a kernel WireGuard interface");
                return Ok((index, Arc::new(device), None));
            }
            Err(CreateError::Unsupported) if choice == BackendChoice::Auto => {}
            Err(CreateError::Unsupported) => bail!(
                "--wg-backend kernel: the kernel has no WireGuard (try `modprobe wireguard`, or --wg-backend userspace with wireguard-go)"
            ),
            Err(CreateError::Permission) => bail!(
                "no permission to create network interfaces: run flnode as root or give it CAP_NET_ADMIN"
            ),
            Err(CreateError::Other(error)) => return Err(netlink_error(error, &format!("cannot create {name}"))),
        }
    }
    let daemon = match Daemon::start(name, keep).await {
        Ok(daemon) => daemon,
        Err(StartError::NotInstalled) if choice == BackendChoice::Auto => bail!(
            "no WireGuard here: the kernel has none and wireguard-go is not installed; install wireguard-go \
             (apt-get install wireguard-go) or load the kernel module (modprobe wireguard)"
        ),
        Err(StartError::NotInstalled) => {
            bail!("--wg-backend userspace: wireguard-go is not installed (apt-get install wireguard-go)")
        }
        Err(error) => bail!("{error}"),
    };
    let index = match links.find(name.as_str()).await {
        Ok(Some(link)) => link.index,
        _ => {
            daemon.stop().await;
            bail!("wireguard-go started but {name} did not appear");
        }
    };
    tracing::info!(interface = %name, "started wireguard-go");
    let device = daemon.device();
    Ok((index, Arc::new(device), Some(daemon)))
}

/// Takes over an existing interface if it is free or this node's own.
async fn adopt(
    name: &InterfaceName,
    link: &FoundLink,
    choice: BackendChoice,
    public: WgKey,
) -> anyhow::Result<(Arc<dyn Device>, Origin)> {
    let in_use = |what: &str| {
        anyhow!("interface {name} exists and is {what}: remove it or choose another name with --wg-interface")
    };
    let device: Arc<dyn Device> = match (&link.kind, choice) {
        (LinkKind::WireGuard, BackendChoice::Userspace) => {
            return Err(in_use(
                "a kernel WireGuard interface (--wg-backend userspace cannot drive it)",
            ))
        }
        (LinkKind::WireGuard, _) => Arc::new(KernelDevice::connect(link.index).context("generic netlink")?),
        (LinkKind::Tun, BackendChoice::Kernel) => {
            return Err(in_use("a userspace one (--wg-backend kernel cannot drive it)"))
        }
        (LinkKind::Tun, _) if userspace::serves_this_namespace(name) => Arc::new(UserspaceDevice::adopt(name)),
        (LinkKind::Tun, _) => return Err(in_use("a TUN device that no wireguard-go here answers for")),
        (LinkKind::Other(kind), _) if kind.is_empty() => return Err(in_use("not a WireGuard interface")),
        (LinkKind::Other(kind), _) => return Err(in_use(&format!("a {kind} interface, not WireGuard"))),
    };
    let view = device.view().await.map_err(device_error)?;
    let origin = match view.public_key {
        Some(key) if key == public => Origin::LeftByEarlierRun,
        None if view.peers.is_empty() => Origin::AdoptedFree,
        _ => return Err(in_use("a WireGuard interface configured by something else")),
    };
    tracing::info!(interface = %name, ?origin, "adopted an existing WireGuard interface");
    Ok((device, origin))
}

fn netlink_error(error: rtnetlink::Error, what: &str) -> anyhow::Error {
    if let rtnetlink::Error::NetlinkError(message) = &error {
        if matches!(message.raw_code().abs(), nix::libc::EPERM | nix::libc::EACCES) {
            return anyhow!("{what}: no permission (run flnode as root or with CAP_NET_ADMIN)");
        }
    }
    anyhow!("{what}: {error}")
}

fn device_error(error: DeviceError) -> anyhow::Error {
    anyhow!("the WireGuard device: {error}")
}

/// Whether this process holds CAP_NET_ADMIN (bit 12 of its effective
/// capabilities), without which no backend can create or configure the
/// interface.
fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        // No /proc: let the first netlink request say.
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}
