//! WireGuard's cross-platform control protocol (wireguard.com/xplatform),
//! as wireguard-go serves it on `/var/run/wireguard/NAME.sock`: `key=value`
//! lines, a request ending in an empty line, an answer ending in `errno=N`
//! and an empty line. Requests are built and answers parsed here, pure;
//! [`exchange`] is the one function that touches the socket.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::device::{DeviceError, DeviceView, PeerOp, PeerView};
use super::key::{WgKey, WgSecret};

/// Longest answer read from the control socket: about 4000 peers' worth;
/// a longer one is refused rather than read without end.
pub const MAX_ANSWER: usize = 1024 * 1024;
/// How long one request may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// `get=1`: the whole device.
pub fn get_request() -> String {
    "get=1\n\n".to_owned()
}

/// Sets the private key and the listen port.
pub fn identity_request(secret: &WgSecret, listen_port: u16) -> String {
    format!("set=1\nprivate_key={}\nlisten_port={listen_port}\n\n", secret.to_hex())
}

/// Applies peer changes in one request.
pub fn peers_request(ops: &[PeerOp]) -> String {
    let mut request = String::from("set=1\n");
    for op in ops {
        match op {
            PeerOp::Set(peer) => {
                request.push_str(&format!("public_key={}\n", peer.key.to_hex()));
                if let Some(endpoint) = peer.set_endpoint() {
                    request.push_str(&format!("endpoint={endpoint}\n"));
                }
                request.push_str(&format!(
                    "persistent_keepalive_interval={}\nreplace_allowed_ips=true\n",
                    peer.keepalive().unwrap_or(0)
                ));
                for net in &peer.allowed_ips {
                    request.push_str(&format!("allowed_ip={net}\n"));
                }
            }
            PeerOp::Remove(key) => request.push_str(&format!("public_key={}\nremove=true\n", key.to_hex())),
        }
    }
    request.push('\n');
    request
}

/// The `errno` of an answer to a `set` request.
pub fn parse_set_answer(answer: &str) -> Result<(), DeviceError> {
    match errno(answer)? {
        0 => Ok(()),
        errno => Err(DeviceError::Refused(errno)),
    }
}

fn errno(answer: &str) -> Result<i64, DeviceError> {
    let value = answer
        .lines()
        .find_map(|line| line.strip_prefix("errno="))
        .ok_or_else(|| DeviceError::Garbled("no errno".into()))?;
    value
        .trim()
        .parse()
        .map_err(|_| DeviceError::Garbled(format!("errno={value}")))
}

/// Parses the answer to [`get_request`].
pub fn parse_get_answer(answer: &str) -> Result<DeviceView, DeviceError> {
    if errno(answer)? != 0 {
        return Err(DeviceError::Refused(errno(answer)?));
    }
    let mut view = DeviceView::default();
    let mut handshake_secs = 0u64;
    let mut handshake_nanos = 0u32;
    let garbled = |line: &str| DeviceError::Garbled(line.chars().take(120).collect());
    for line in answer.lines().take_while(|line| !line.is_empty()) {
        let (key, value) = line.split_once('=').ok_or_else(|| garbled(line))?;
        let peer = view.peers.last_mut();
        match (key, peer) {
            ("private_key", _) => {
                let secret = WgSecret(hex32(value).ok_or_else(|| garbled(line))?);
                view.public_key = Some(public_of_secret(&secret));
            }
            ("listen_port", _) => view.listen_port = value.parse().map_err(|_| garbled(line))?,
            ("public_key", _) => {
                finish_handshake(view.peers.last_mut(), handshake_secs, handshake_nanos);
                (handshake_secs, handshake_nanos) = (0, 0);
                view.peers.push(PeerView {
                    key: WgKey(hex32(value).ok_or_else(|| garbled(line))?),
                    endpoint: None,
                    allowed_ips: Vec::new(),
                    keepalive: None,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                });
            }
            ("endpoint", Some(peer)) => peer.endpoint = Some(value.parse::<SocketAddr>().map_err(|_| garbled(line))?),
            ("allowed_ip", Some(peer)) => peer
                .allowed_ips
                .push(value.parse::<IpNet>().map_err(|_| garbled(line))?),
            ("persistent_keepalive_interval", Some(peer)) => {
                let seconds: u16 = value.parse().map_err(|_| garbled(line))?;
                peer.keepalive = (seconds != 0).then_some(seconds);
            }
            ("rx_bytes", Some(peer)) => peer.rx_bytes = value.parse().map_err(|_| garbled(line))?,
            ("tx_bytes", Some(peer)) => peer.tx_bytes = value.parse().map_err(|_| garbled(line))?,
            ("last_handshake_time_sec", Some(_)) => handshake_secs = value.parse().map_err(|_| garbled(line))?,
            ("last_handshake_time_nsec", Some(_)) => handshake_nanos = value.parse().map_err(|_| garbled(line))?,
            // fwmark, preshared_key, protocol_version, errno, and whatever
            // later versions add.
            _ => {}
        }
    }
    finish_handshake(view.peers.last_mut(), handshake_secs, handshake_nanos);
    for peer in &mut view.peers {
        peer.allowed_ips.sort();
    }
    Ok(view)
}

/// A handshake time of zero means none yet.
fn finish_handshake(peer: Option<&mut PeerView>, secs: u64, nanos: u32) {
    if let Some(peer) = peer {
        if secs != 0 || nanos != 0 {
            peer.last_handshake = SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos.min(999_999_999)));
        }
    }
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    flproto::ids::parse_hex32(text).ok()
}

/// Only to compare with this node's key: the device shows the private
/// key, and flnode adopts an interface only if it is this node's own.
fn public_of_secret(secret: &WgSecret) -> WgKey {
    WgKey(curve25519_dalek::MontgomeryPoint::mul_base_clamped(secret.0).to_bytes())
}

/// The control socket of interface `name`.
pub fn socket_path(name: &str) -> std::path::PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.sock"))
}

/// Where wireguard-go puts its control sockets.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// Sends `request` and reads the answer, within [`TIMEOUT`] and
/// [`MAX_ANSWER`] bytes.
pub async fn exchange(socket: &Path, request: &str) -> Result<String, DeviceError> {
    exchange_within(socket, request, MAX_ANSWER, TIMEOUT).await
}

async fn exchange_within(
    socket: &Path,
    request: &str,
    max_answer: usize,
    timeout: Duration,
) -> Result<String, DeviceError> {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
            if answer.len() > max_answer {
                return Err(DeviceError::Garbled(format!(
                    "an answer longer than {max_answer} bytes"
                )));
            }
            if answer.ends_with(b"\n\n") {
                break;
            }
        }
        String::from_utf8(answer).map_err(|_| DeviceError::Garbled("an answer that is not UTF-8".into()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DeviceError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::super::device::{Handshake, PeerConfig};
    use super::*;

    fn key(byte: u8) -> WgKey {
        WgKey([byte; 32])
    }

    #[test]
    fn peer_changes_are_one_set_request() {
        let ops = [
            PeerOp::Set(PeerConfig {
                key: key(0xaa),
                endpoint: "127.0.0.1:40000".parse().unwrap(),
                allowed_ips: vec![
                    "100.64.0.7/32".parse().unwrap(),
                    "fd50:e038:65e7::7/128".parse().unwrap(),
                ],
                handshake: Handshake::Starts { keepalive: 25 },
            }),
            PeerOp::Remove(key(0xbb)),
            PeerOp::Set(PeerConfig {
                key: key(0xcc),
                endpoint: "127.0.0.1:40001".parse().unwrap(),
                allowed_ips: vec![],
                handshake: Handshake::Answers,
            }),
        ];
        let request = peers_request(&ops);
        assert_eq!(
            request,
            format!(
                "set=1\npublic_key={}\nendpoint=127.0.0.1:40000\npersistent_keepalive_interval=25\n\
                 replace_allowed_ips=true\nallowed_ip=100.64.0.7/32\nallowed_ip=fd50:e038:65e7::7/128\n\
                 public_key={}\nremove=true\n\
                 public_key={}\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\n\n",
                "aa".repeat(32),
                "bb".repeat(32),
                "cc".repeat(32)
            )
        );
        let identity = identity_request(&WgSecret([1; 32]), 0);
        assert_eq!(
            identity,
            format!("set=1\nprivate_key={}\nlisten_port=0\n\n", "01".repeat(32))
        );
    }

    #[test]
    fn a_get_answer_becomes_the_device_view() {
        let secret = WgSecret([7; 32]);
        let answer = format!(
            "private_key={}\nlisten_port=51820\npublic_key={}\npreshared_key={}\nprotocol_version=1\n\
             endpoint=127.0.0.1:40000\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n\
             tx_bytes=100\nrx_bytes=200\npersistent_keepalive_interval=25\nallowed_ip=fd50:e038:65e7::7/128\n\
             allowed_ip=100.64.0.7/32\npublic_key={}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
             persistent_keepalive_interval=0\nerrno=0\n\n",
            secret.to_hex(),
            "aa".repeat(32),
            "00".repeat(32),
            "bb".repeat(32)
        );
        let view = parse_get_answer(&answer).unwrap();
        assert_eq!(view.public_key, Some(public_of_secret(&secret)));
        assert_eq!(view.listen_port, 51820);
        assert_eq!(view.peers.len(), 2);
        let first = &view.peers[0];
        assert_eq!(first.key, key(0xaa));
        assert_eq!(first.endpoint, Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(first.keepalive, Some(25));
        assert_eq!((first.rx_bytes, first.tx_bytes), (200, 100));
        assert_eq!(
            first.last_handshake,
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        // Sorted, so that comparing with the wanted entry is exact.
        assert_eq!(first.allowed_ips[0].to_string(), "100.64.0.7/32");
        let second = &view.peers[1];
        assert_eq!(
            (second.keepalive, second.last_handshake, second.endpoint),
            (None, None, None)
        );
    }

    #[test]
    fn a_device_without_a_key_has_no_public_key() {
        let view = parse_get_answer("listen_port=0\nerrno=0\n\n").unwrap();
        assert_eq!(view, DeviceView::default());
    }

    /// A control socket that answers every connection with `answer`
    /// (and then keeps it open without a word, if `answer` is empty).
    fn fake_device(dir: &Path, answer: Vec<u8>) -> std::path::PathBuf {
        let path = dir.join("fake.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let _ = stream.write_all(&answer).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                });
            }
        });
        path
    }

    #[tokio::test]
    async fn a_device_that_talks_too_much_or_not_at_all_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let endless = fake_device(dir.path(), vec![b'x'; 64 * 1024]);
        let error = exchange_within(&endless, "get=1\n\n", 16 * 1024, TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(error, DeviceError::Garbled(_)), "{error}");
        let quiet_dir = tempfile::tempdir().unwrap();
        let quiet = fake_device(quiet_dir.path(), Vec::new());
        let wait = Duration::from_millis(100);
        let error = exchange_within(&quiet, "get=1\n\n", MAX_ANSWER, wait)
            .await
            .unwrap_err();
        assert!(matches!(error, DeviceError::Timeout(_)), "{error}");
        let fine_dir = tempfile::tempdir().unwrap();
        let fine = fake_device(fine_dir.path(), b"listen_port=1\nerrno=0\n\n".to_vec());
        let answer = exchange(&fine, "get=1\n\n").await.unwrap();
        assert_eq!(parse_get_answer(&answer).unwrap().listen_port, 1);
    }

    #[test]
    fn errors_and_garbage_are_errors_not_panics() {
        assert!(matches!(parse_set_answer("errno=0\n\n"), Ok(())));
        assert!(matches!(
            parse_set_answer("errno=22\n\n"),
            Err(DeviceError::Refused(22))
        ));
        assert!(matches!(parse_get_answer("errno=1\n\n"), Err(DeviceError::Refused(1))));
        for garbage in [
            "",
            "errno=x\n\n",
            "listen_port=99999\nerrno=0\n\n",
            "private_key=zz\nerrno=0\n\n",
            "no equals sign\nerrno=0\n\n",
            &format!("public_key={}\nendpoint=nowhere\nerrno=0\n\n", "aa".repeat(32)),
            &format!("public_key={}\nallowed_ip=1.2.3.4/99\nerrno=0\n\n", "aa".repeat(32)),
        ] {
            assert!(parse_get_answer(garbage).is_err(), "{garbage:?}");
        }
        // Peer fields before any peer, and unknown keys, are ignored.
        assert!(parse_get_answer("endpoint=1.2.3.4:5\nfuture_key=1\nerrno=0\n\n").is_ok());
    }
}
