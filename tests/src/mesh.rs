//! Several test hosts on one link: a bridge in a network namespace of its
//! own, with a veth pair to each host's namespace. Host `i` is
//! 10.203.0.`i+1`; the bridge's namespace is 10.203.0.254 (where the tests
//! run flsignal, so that every host reaches it the same way). Everything
//! is removed when the mesh is dropped, also when the test fails.

use anyhow::Context;

use crate::netns::{ip, unique_tag};

/// The hosts' /24.
pub const MESH_PREFIX: &str = "10.203.0";
/// The bridge namespace's own address.
pub const MESH_SERVER: &str = "10.203.0.254";

pub struct Mesh {
    /// One namespace per host.
    pub hosts: Vec<String>,
    /// The namespace that holds the bridge (and flsignal).
    pub switch: String,
    /// Unique per mesh, for names that are not namespaced (wireguard-go's
    /// control sockets).
    pub tag: String,
}

impl Mesh {
    pub fn new(count: usize) -> anyhow::Result<Mesh> {
        anyhow::ensure!((1..=200).contains(&count), "1 to 200 hosts");
        let tag = unique_tag("m");
        let mut mesh = Mesh {
            hosts: Vec::new(),
            switch: format!("flm{tag}s"),
            tag: tag.clone(),
        };
        // Each namespace joins the mesh before anything else can fail, so
        // Drop removes whatever exists.
        ip(&["netns", "add", &mesh.switch])?;
        let bridge = "br0";
        ip(&["-n", &mesh.switch, "link", "add", bridge, "type", "bridge"])?;
        ip(&["-n", &mesh.switch, "link", "set", bridge, "up"])?;
        ip(&["-n", &mesh.switch, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &mesh.switch,
            "addr",
            "add",
            &format!("{MESH_SERVER}/24"),
            "dev",
            bridge,
        ])?;
        for index in 0..count {
            let host = format!("flm{tag}h{index}");
            ip(&["netns", "add", &host])?;
            mesh.hosts.push(host.clone());
            let (outer, inner) = (format!("s{tag}h{index}"), mesh.link_of(index));
            ip(&[
                "link",
                "add",
                &inner,
                "netns",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                &outer,
                "netns",
                &mesh.switch,
            ])?;
            ip(&["-n", &mesh.switch, "link", "set", &outer, "master", bridge])?;
            ip(&["-n", &mesh.switch, "link", "set", &outer, "up"])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{}/24", Self::address(index)),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &host, "link", "set", &inner, "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
        }
        Ok(mesh)
    }

    /// Host `index`'s address on the link.
    pub fn address(index: usize) -> String {
        format!("{MESH_PREFIX}.{}", index + 1)
    }

    /// The interface name of host `index` on the link (unique, as veth
    /// pairs are made before their ends move into the namespaces).
    pub fn link_of(&self, index: usize) -> String {
        format!("e{}h{index}", self.tag)
    }

    /// A WireGuard interface name for host `index`, unique across every
    /// test running on this machine (wireguard-go's control sockets share
    /// one directory).
    pub fn wireguard_name(&self, index: usize) -> String {
        format!("wg{}h{index}", self.tag)
    }

    pub fn host(&self, index: usize) -> anyhow::Result<&str> {
        self.hosts.get(index).map(String::as_str).context("no such host")
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and so the pairs.
        // Processes started in them were killed by their own drop.
        for host in &self.hosts {
            let _ = ip(&["netns", "del", host]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}
