//! The two things a user names about the managed interface: what it is
//! called and which WireGuard implementation drives it.

/// The interface flnode manages when `--wg-interface` is not given.
pub const DEFAULT_INTERFACE: &str = "flnode0";
/// Longest interface name Linux takes (IFNAMSIZ minus the final NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// An interface name that Linux accepts and that is safe in a path (the
/// userspace backend's control socket is `/var/run/wireguard/NAME.sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interface name {0:?}: use 1 to {MAX_INTERFACE_NAME} letters, digits, '-', '_' or '.', not starting with '.'")]
pub struct BadInterfaceName(String);

impl InterfaceName {
    pub fn parse(text: &str) -> Result<InterfaceName, BadInterfaceName> {
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if text.is_empty() || text.len() > MAX_INTERFACE_NAME || text.starts_with('.') || !text.chars().all(fine) {
            return Err(BadInterfaceName(text.chars().take(MAX_INTERFACE_NAME + 8).collect()));
        }
        Ok(InterfaceName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for InterfaceName {
    fn default() -> Self {
        InterfaceName(DEFAULT_INTERFACE.to_owned())
    }
}

impl std::fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which WireGuard implementation `--wg-backend` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The kernel's if a `wireguard` link can be created, else wireguard-go.
    #[default]
    Auto,
    /// The Linux kernel's WireGuard, configured over generic netlink.
    Kernel,
    /// wireguard-go, started by flnode, configured over its control socket.
    Userspace,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_linux_and_a_path() {
        assert_eq!(InterfaceName::default().as_str(), "flnode0");
        assert!(InterfaceName::parse("wg-home.1").is_ok());
        assert!(InterfaceName::parse(&"a".repeat(MAX_INTERFACE_NAME)).is_ok());
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "with space",
            "tab\t",
            &"a".repeat(MAX_INTERFACE_NAME + 1),
        ] {
            assert!(InterfaceName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
