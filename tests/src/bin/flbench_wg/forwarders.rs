//! Two plain user-space UDP forwarders, one per host, between the two
//! WireGuards: the least any design that carries WireGuard through a
//! process on each side must do. Their added RTT is the floor for flnode's
//! on this machine: each direction wakes two more processes than the
//! direct path, whatever they do with the datagram.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use e2e::netns::{Testbed, ADDR_B};

/// Where WireGuard on host a sends (its endpoint while forwarders carry).
pub const FORWARDER_A: &str = "127.0.0.1:51950";
/// Host b's forwarder, which host a's sends to.
const FORWARDER_B_PORT: u16 = 51951;
/// How often a blocked forwarder thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(200);

pub struct Forwarders {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Datagrams carried, both forwarders and both ways.
    carried: Arc<AtomicU64>,
}

impl Forwarders {
    /// Host a's forwarder to host b's, and host b's to its WireGuard at
    /// `wireguard_port` (both listen where [`FORWARDER_A`] and host b's
    /// address say).
    pub fn start(testbed: &Testbed, wireguard_port: u16) -> anyhow::Result<Forwarders> {
        let mut forwarders = Forwarders {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            carried: Arc::new(AtomicU64::new(0)),
        };
        let to_b: SocketAddr = format!("{ADDR_B}:{FORWARDER_B_PORT}").parse()?;
        let to_wireguard: SocketAddr = ([127, 0, 0, 1], wireguard_port).into();
        forwarders.forward(&testbed.a, FORWARDER_A.parse()?, to_b)?;
        forwarders.forward(&testbed.b, to_b, to_wireguard)?;
        Ok(forwarders)
    }

    pub fn carried(&self) -> u64 {
        self.carried.load(Ordering::Relaxed)
    }

    /// Datagrams to `listen` go on to `target`; answers from `target` go
    /// back to whoever sent last. One blocking thread each way.
    fn forward(&mut self, ns: &str, listen: SocketAddr, target: SocketAddr) -> anyhow::Result<()> {
        let (near, far) = Testbed::in_namespace(ns, move || {
            let near = UdpSocket::bind(listen)?;
            let far = UdpSocket::bind(("0.0.0.0", 0))?;
            far.connect(target)?;
            for socket in [&near, &far] {
                socket.set_read_timeout(Some(STOP_CHECK))?;
            }
            Ok((near, far))
        })?;
        let (near, far) = (Arc::new(near), Arc::new(far));
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        let (stop, carried) = (self.stop.clone(), self.carried.clone());
        let (near_in, far_out, client_in) = (near.clone(), far.clone(), client.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut buffer = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((len, source)) = near_in.recv_from(&mut buffer) {
                    *client_in.lock().unwrap() = Some(source);
                    let _ = far_out.send(&buffer[..len]);
                    carried.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let (stop, carried) = (self.stop.clone(), self.carried.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut buffer = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(len) = far.recv(&mut buffer) {
                    if let Some(client) = *client.lock().unwrap() {
                        let _ = near.send_to(&buffer[..len], client);
                        carried.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
        Ok(())
    }
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
