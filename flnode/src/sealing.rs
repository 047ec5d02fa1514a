//! Whether this node seals its setup messages (`--require-sealed`,
//! `--plain-setups`), decided once from flags, environment and
//! `flnode.toml` like every other setting.

use anyhow::bail;
use flproto::peer_setup::SealPolicy;

#[derive(clap::Args, Debug, Default)]
pub struct SealArgs {
    /// Seal every setup message, whatever the peer advertises, and refuse
    /// every plain one: a peer that cannot open sealed setups (fledger, an
    /// older flnode or page) cannot connect
    #[arg(long, env = "FLNODE_REQUIRE_SEALED", conflicts_with = "plain_setups")]
    pub require_sealed: bool,
    /// Never seal setup messages nor advertise that this node opens sealed
    /// ones, for a signalling server that cannot relay them (flsignal before
    /// sealed setups); implied by --fledger-compat
    #[arg(long, env = "FLNODE_PLAIN_SETUPS")]
    pub plain_setups: bool,
}

/// What the flags (or environment), `require_sealed` / `plain_setups` in
/// the file, and `--fledger-compat` ask for.
pub fn policy(
    args: &SealArgs,
    file_require_sealed: bool,
    file_plain_setups: bool,
    fledger_compat: bool,
) -> anyhow::Result<SealPolicy> {
    let require_sealed = args.require_sealed || file_require_sealed;
    let plain_setups = args.plain_setups || file_plain_setups;
    match (require_sealed, plain_setups, fledger_compat) {
        (true, true, _) => bail!("--require-sealed and --plain-setups contradict each other: give one"),
        (true, _, true) => bail!(
            "--require-sealed with --fledger-compat: fledger's server does not relay sealed setups; \
             drop one of the two"
        ),
        (true, false, false) => Ok(SealPolicy::Require),
        (false, _, true) | (false, true, _) => Ok(SealPolicy::Plain),
        (false, false, false) => Ok(SealPolicy::Prefer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(require_sealed: bool, plain_setups: bool) -> SealArgs {
        SealArgs {
            require_sealed,
            plain_setups,
        }
    }

    #[test]
    fn sealing_is_preferred_by_default_and_each_flag_does_what_it_says() {
        let none = flags(false, false);
        assert_eq!(policy(&none, false, false, false).unwrap(), SealPolicy::Prefer);
        assert_eq!(
            policy(&flags(true, false), false, false, false).unwrap(),
            SealPolicy::Require
        );
        assert_eq!(policy(&none, true, false, false).unwrap(), SealPolicy::Require);
        assert_eq!(
            policy(&flags(false, true), false, false, false).unwrap(),
            SealPolicy::Plain
        );
        assert_eq!(policy(&none, false, true, false).unwrap(), SealPolicy::Plain);
        assert_eq!(policy(&none, false, false, true).unwrap(), SealPolicy::Plain);
        assert!(policy(&flags(true, false), false, true, false)
            .unwrap_err()
            .to_string()
            .contains("contradict"));
        assert!(policy(&none, true, false, true)
            .unwrap_err()
            .to_string()
            .contains("fledger's server does not relay"));
    }
}
