//! What a signalling server learns from the setup frames it handles: every
//! setup message in a relay's recording, opened with the nodes' keys; the
//! secrets inside them (addresses, ports, ICE credentials, DTLS
//! fingerprints); and every place one of them shows in the recorded frames,
//! as text or in any encoding a node might use (hex, base64).

use base64::Engine;
use flproto::identity::NodeKey;
use flproto::message::{NodeMessage, PeerInfo, ServerMessage, SetupMessage};
use flproto::seal;
use flproto::setup_auth::{self, SetupHeader};
use flproto::x25519;

use crate::hostile_relay::{Direction, Recorded};

/// One setup message of the recording.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The frame as recorded.
    pub frame: String,
    pub sealed: bool,
    /// What it carried (opened, if it was sealed); `None` if no key
    /// verifies and opens it: a forgery, which carries nothing of a node.
    pub message: Option<SetupMessage>,
}

/// The setup messages in `frames` (each relayed one is recorded twice, as
/// it came from its sender and as it went to its receiver). A sealed one
/// is opened by whichever of `keys` it is for.
pub fn setup_messages(frames: &[Recorded], keys: &[NodeKey]) -> Vec<Opened> {
    let mut opened = Vec::new();
    for recorded in frames {
        let info = match recorded.direction {
            Direction::FromNode => match serde_json::from_str(&recorded.text) {
                Ok(NodeMessage::PeerSetup(info)) => info,
                _ => continue,
            },
            Direction::ToNode => match serde_json::from_str(&recorded.text) {
                Ok(ServerMessage::PeerSetup(info)) => info,
                _ => continue,
            },
        };
        opened.push(Opened {
            frame: recorded.text.clone(),
            sealed: matches!(info.message, SetupMessage::Sealed(_)),
            message: open(&info, keys),
        });
    }
    opened
}

fn open(info: &PeerInfo, keys: &[NodeKey]) -> Option<SetupMessage> {
    keys.iter().find_map(|key| {
        let (sender, auth) = setup_auth::verify(info, &key.id()).ok()?;
        match &info.message {
            SetupMessage::Sealed(text) => {
                seal::open(&x25519::secret_of(key), &SetupHeader::of(info, sender, &auth), text).ok()
            }
            plain => Some(plain.clone()),
        }
    })
}

/// A value a setup message carries that the server must not learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// What it is ("address", "port", "ufrag", "pwd", "fingerprint").
    pub kind: &'static str,
    /// As the setup message has it.
    pub value: String,
}

impl Secret {
    fn new(kind: &'static str, value: &str) -> Secret {
        Secret {
            kind,
            value: value.to_owned(),
        }
    }

    /// The forms the secret would take in a frame: the text itself, its
    /// bytes in hex and base64 (standard and URL alphabet, at each of the
    /// three alignments inside a longer base64 text), and for addresses and
    /// fingerprints their binary form encoded the same ways.
    pub fn forms(&self) -> Vec<(String, String)> {
        let mut forms = vec![("text".to_owned(), self.value.clone())];
        let mut binaries = vec![("utf-8", self.value.as_bytes().to_vec())];
        if let Ok(ip) = self.value.parse::<std::net::IpAddr>() {
            binaries.push((
                "binary",
                match ip {
                    std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                    std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
                },
            ));
        }
        if self.kind == "fingerprint" {
            let digits: String = self.value.chars().filter(char::is_ascii_hexdigit).collect();
            forms.push(("text, lower case".to_owned(), self.value.to_ascii_lowercase()));
            if let Ok(raw) = hex::decode(digits) {
                binaries.push(("binary", raw));
            }
        }
        for (name, bytes) in binaries {
            forms.push((format!("hex of {name}"), hex::encode(&bytes)));
            forms.push((format!("HEX of {name}"), hex::encode_upper(&bytes)));
            for (alphabet, engine) in [
                ("base64", &base64::engine::general_purpose::STANDARD_NO_PAD),
                ("base64url", &base64::engine::general_purpose::URL_SAFE_NO_PAD),
            ] {
                for shift in 0..3 {
                    if let Some(inner) = aligned_base64(engine, &bytes, shift) {
                        forms.push((format!("{alphabet} of {name} at offset {shift}"), inner));
                    }
                }
            }
        }
        forms
    }
}

/// The characters of the base64 of `bytes` preceded by `shift` other bytes
/// that depend on `bytes` alone: what any base64 text containing `bytes`
/// at that alignment contains. `None` when shorter than 6 characters:
/// random ciphertext contains so short a string by chance (a 4-byte
/// address in base64 is 4 or 5 characters; its hex form is searched).
fn aligned_base64(engine: &impl Engine, bytes: &[u8], shift: usize) -> Option<String> {
    let mut padded = vec![0u8; shift];
    padded.extend_from_slice(bytes);
    let encoded = engine.encode(&padded);
    let first = (8 * shift).div_ceil(6);
    let end = (8 * (shift + bytes.len())) / 6;
    let inner = encoded.get(first..end)?;
    (inner.len() >= 6).then(|| inner.to_owned())
}

/// Every secret the opened messages carry.
pub fn secrets_in(messages: &[Opened]) -> Vec<Secret> {
    let mut secrets = Vec::new();
    let mut add = |secret: Secret| {
        if !secrets.contains(&secret) {
            secrets.push(secret);
        }
    };
    for opened in messages {
        let lines: Vec<&str> = match &opened.message {
            Some(SetupMessage::Offer(sdp) | SetupMessage::Answer(sdp)) => sdp.lines().collect(),
            Some(SetupMessage::IceCandidate(candidate)) => vec![candidate.as_str()],
            _ => Vec::new(),
        };
        for line in lines {
            let line = line.trim();
            if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
                ufrag_secrets(ufrag).into_iter().for_each(&mut add);
            } else if let Some(pwd) = line.strip_prefix("a=ice-pwd:") {
                add(Secret::new("pwd", pwd));
            } else if let Some(fingerprint) = line.strip_prefix("a=fingerprint:") {
                if let Some((_, value)) = fingerprint.split_once(' ') {
                    add(Secret::new("fingerprint", value));
                }
            } else if let Some(candidate) = line.strip_prefix("a=").unwrap_or(line).strip_prefix("candidate:") {
                candidate_secrets(candidate).into_iter().for_each(&mut add);
            }
        }
    }
    secrets
}

/// Address, port, related address and port, and ufrag of a candidate
/// (`FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ TYPE ...`).
/// A port is searched for as it stands in a candidate (` PORT typ `), so
/// that the same digits in a timestamp do not count.
fn candidate_secrets(candidate: &str) -> Vec<Secret> {
    let fields: Vec<&str> = candidate.split_whitespace().collect();
    let mut secrets = Vec::new();
    if let (Some(address), Some(port)) = (fields.get(4), fields.get(5)) {
        secrets.push(Secret::new("address", address));
        secrets.push(Secret::new("port", &format!(" {port} typ ")));
    }
    for pair in fields.windows(2) {
        match pair {
            ["raddr", address] if *address != "0.0.0.0" && *address != "::" => {
                secrets.push(Secret::new("address", address))
            }
            ["rport", port] if *port != "0" => secrets.push(Secret::new("port", &format!(" rport {port}"))),
            ["ufrag", ufrag] => secrets.extend(ufrag_secrets(ufrag)),
            _ => {}
        }
    }
    secrets
}

/// A ufrag as it is searched for: Chromium's are 4 characters, which
/// random base64 contains by chance now and then, so a short one is
/// searched for with the word before it, as SDP and candidates carry it.
fn ufrag_secrets(ufrag: &str) -> Vec<Secret> {
    if ufrag.len() >= 8 {
        vec![Secret::new("ufrag", ufrag)]
    } else {
        vec![
            Secret::new("ufrag", &format!("ufrag:{ufrag}")),
            Secret::new("ufrag", &format!("ufrag {ufrag}")),
        ]
    }
}

/// The frame with the `server` of an Announce blanked: the server's own
/// name, which a bound announce must sign. In a test topology it can be an
/// address of a node's host as well (flsignal next to a node), but it says
/// nothing about where a node is.
pub fn without_server_name(frame: &str) -> String {
    match serde_json::from_str(frame) {
        Ok(NodeMessage::Announce(announce)) => match &announce.server {
            Some(server) => frame.replace(&format!(r#""server":"{server}""#), r#""server":"""#),
            None => frame.to_owned(),
        },
        _ => frame.to_owned(),
    }
}

/// Every place a secret shows in the recorded frames: one line each, with
/// the secret, the form it took and the start of the frame.
pub fn leaks(frames: &[Recorded], secrets: &[Secret]) -> Vec<String> {
    let searched: Vec<(usize, String)> = frames
        .iter()
        .map(|recorded| (recorded.connection, without_server_name(&recorded.text)))
        .collect();
    let mut found = Vec::new();
    for secret in secrets {
        for (form, needle) in secret.forms() {
            for (connection, frame) in &searched {
                if frame.contains(&needle) {
                    found.push(format!(
                        "{} {:?} as {form} ({needle:?}) in a frame of connection {connection}: {}",
                        secret.kind,
                        secret.value,
                        frame.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    found
}

/// What a recording must show when every node seals: every setup that
/// verifies for one of `keys` is sealed, exactly `forged` do not verify
/// (the relay's own altered copies), the setups carried every kind of
/// secret, and neither those secrets nor `addresses` (the nodes' own)
/// show anywhere. A one-line summary, or what went wrong.
pub fn check_sealed_recording(
    frames: &[Recorded],
    keys: &[NodeKey],
    addresses: &[&str],
    forged: usize,
) -> anyhow::Result<String> {
    let opened = setup_messages(frames, keys);
    let plain: Vec<&Opened> = opened.iter().filter(|setup| !setup.sealed).collect();
    anyhow::ensure!(plain.is_empty(), "plain setups went through the server: {plain:#?}");
    let unverified = opened.iter().filter(|setup| setup.message.is_none()).count();
    anyhow::ensure!(
        unverified == forged,
        "{unverified} setups do not verify, expected {forged}"
    );
    let mut secrets = secrets_in(&opened);
    for kind in ["address", "port", "ufrag", "pwd", "fingerprint"] {
        anyhow::ensure!(
            secrets.iter().any(|secret| secret.kind == kind),
            "no {kind} in the setups: {secrets:?}"
        );
    }
    secrets.extend(addresses.iter().map(|address| Secret::new("address", address)));
    let found = leaks(frames, &secrets);
    anyhow::ensure!(found.is_empty(), "the server saw:\n{}", found.join("\n"));
    Ok(format!(
        "{} frames recorded, {} setups (all sealed, {forged} forged by the relay), {} secrets searched for in every encoding, none found",
        frames.len(),
        opened.len(),
        secrets.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_in_every_encoding() {
        let secret = Secret::new("pwd", "VXYpsOLaG/Mjn2qeXF4BGXrM");
        for prefix in ["", "x", "xy", "xyz"] {
            let bytes = format!("{prefix}{}{prefix}", secret.value);
            let frames: Vec<Recorded> = [
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                base64::engine::general_purpose::URL_SAFE.encode(&bytes),
                hex::encode(&bytes),
                bytes.clone(),
            ]
            .into_iter()
            .map(|text| Recorded {
                connection: 0,
                direction: Direction::FromNode,
                text,
            })
            .collect();
            for frame in &frames {
                let found = leaks(std::slice::from_ref(frame), std::slice::from_ref(&secret));
                assert!(!found.is_empty(), "prefix {prefix:?}: not found in {}", frame.text);
            }
        }
        let address = Secret::new("address", "10.201.0.2");
        let binary = Recorded {
            connection: 0,
            direction: Direction::ToNode,
            text: "signature 0ac90002".into(),
        };
        assert_eq!(leaks(&[binary], &[address]).len(), 1);
    }

    #[test]
    fn candidates_and_sdp_give_up_their_secrets() {
        let opened = |message| Opened {
            frame: String::new(),
            sealed: true,
            message: Some(message),
        };
        let secrets = secrets_in(&[
            opened(SetupMessage::Offer(
                "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secretpassword\r\na=fingerprint:sha-256 AB:CD\r\n".into(),
            )),
            opened(SetupMessage::IceCandidate(
                "candidate:1 1 udp 1 198.51.100.2 40000 typ srflx raddr 192.168.10.2 rport 50000 generation 0 ufrag abcd".into(),
            )),
        ]);
        let values: Vec<&str> = secrets.iter().map(|secret| secret.value.as_str()).collect();
        assert_eq!(
            values,
            [
                "ufrag:abcd",
                "ufrag abcd",
                "secretpassword",
                "AB:CD",
                "198.51.100.2",
                " 40000 typ ",
                "192.168.10.2",
                " rport 50000"
            ]
        );
    }
}
