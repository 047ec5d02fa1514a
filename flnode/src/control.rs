//! The control socket, `DIR/flnode.sock`: how `flnode status` and
//! `flnode peers` talk to a running node. One request per connection, one
//! JSON line each way ([`Request`], [`Reply`]). The socket is the owner's
//! only (mode 0600), and each connection is read for at most
//! [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`] on a task of its own,
//! so a client that stalls holds up no one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Longest request line read.
pub const MAX_REQUEST: usize = 4096;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests waiting for the node's loop; more are answered "busy".
pub const REQUEST_QUEUE: usize = 16;
/// How long a client waits for the node's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest answer a client reads (a status report of many peers).
pub const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The report `flnode status` prints.
    Status,
    /// The allow-list with each peer's addresses and state.
    Peers,
    /// Allow a node (managed mode), or rename an allowed one.
    PeersAdd { id: String, name: Option<String> },
    /// Take a node off the allow-list.
    PeersRemove { id: String },
}

/// What the node answers: text to print, or an error to report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(String),
    Error(String),
}

/// A request and where its reply goes.
pub type Asked = (Request, oneshot::Sender<Reply>);

pub fn path(dir: &Path) -> PathBuf {
    dir.join("flnode.sock")
}

/// The bound socket; removed from the directory when dropped.
pub struct ControlSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `DIR/flnode.sock`. A node already running with `dir` is an
    /// error; a socket left by one that died is replaced.
    pub fn bind(dir: &Path) -> anyhow::Result<ControlSocket> {
        let path = path(dir);
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                anyhow::bail!(
                    "another flnode is running with {} (its control socket answers)",
                    dir.display()
                );
            }
            std::fs::remove_file(&path)?;
        }
        let listener =
            UnixListener::bind(&path).with_context(|| format!("cannot create control socket {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
        Ok(ControlSocket {
            listener: Some(listener),
            path,
        })
    }

    /// Accepts connections until dropped; each request goes to `requests`.
    pub fn serve(&mut self, requests: mpsc::Sender<Asked>) -> Option<tokio::task::JoinHandle<()>> {
        let listener = self.listener.take()?;
        Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, requests.clone()));
            }
        }))
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(stream: UnixStream, requests: mpsc::Sender<Asked>) {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut limited = BufReader::new(read).take(MAX_REQUEST as u64);
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_until(b'\n', &mut line)).await {
        Err(_) => Reply::Error(format!("no request within {REQUEST_TIMEOUT:?}")),
        Ok(Err(error)) => Reply::Error(format!("cannot read the request: {error}")),
        Ok(Ok(_)) if !line.ends_with(b"\n") => {
            Reply::Error(format!("a request is one line of at most {MAX_REQUEST} bytes"))
        }
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Err(error) => Reply::Error(format!("not a request: {error}")),
            Ok(request) => {
                let (reply_tx, reply) = oneshot::channel();
                match requests.try_send((request, reply_tx)) {
                    Ok(()) => reply
                        .await
                        .unwrap_or_else(|_| Reply::Error("the node is stopping".into())),
                    Err(_) => Reply::Error("the node is busy; try again".into()),
                }
            }
        },
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
    }
}

/// Why a client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("no running flnode answers at {0}")]
    NotRunning(String),
    #[error("the flnode at {0} did not answer within {ANSWER_TIMEOUT:?}")]
    Timeout(String),
    #[error("the flnode at {0} answered something else: {1}")]
    Garbled(String, String),
}

/// Sends `request` to the node running with `dir` and reads its reply.
pub async fn ask(dir: &Path, request: &Request) -> Result<Reply, AskError> {
    let path = path(dir);
    let shown = path.display().to_string();
    let exchange = async {
        let mut stream = UnixStream::connect(&path)
            .await
            .map_err(|_| AskError::NotRunning(shown.clone()))?;
        let mut line =
            serde_json::to_string(request).map_err(|error| AskError::Garbled(shown.clone(), error.to_string()))?;
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .await
            .map_err(|_| AskError::NotRunning(shown.clone()))?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await
            .map_err(|error| AskError::Garbled(shown.clone(), error.to_string()))?;
        serde_json::from_slice(&answer).map_err(|error| AskError::Garbled(shown.clone(), error.to_string()))
    };
    tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| AskError::Timeout(path.display().to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node loop that answers every request with its own debug text.
    fn echo_node(dir: &Path) -> ControlSocket {
        let mut socket = ControlSocket::bind(dir).unwrap();
        let (requests, mut asked) = mpsc::channel::<Asked>(REQUEST_QUEUE);
        socket.serve(requests);
        tokio::spawn(async move {
            while let Some((request, reply)) = asked.recv().await {
                let _ = reply.send(Reply::Ok(format!("{request:?}")));
            }
        });
        socket
    }

    #[tokio::test]
    async fn requests_reach_the_node_and_replies_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let _socket = echo_node(dir.path());
        let add = Request::PeersAdd {
            id: "ab".into(),
            name: Some("laptop".into()),
        };
        assert_eq!(ask(dir.path(), &add).await.unwrap(), Reply::Ok(format!("{add:?}")));
        assert_eq!(
            ask(dir.path(), &Request::Status).await.unwrap(),
            Reply::Ok("Status".into())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn bad_requests_get_an_error_and_cost_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let _socket = echo_node(dir.path());
        let raw = |bytes: Vec<u8>| {
            let path = path(dir.path());
            async move {
                let mut stream = UnixStream::connect(path).await.unwrap();
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                let mut answer = String::new();
                // The node stops reading at the limit; what it did not
                // read may reset the connection before the reply is read.
                match stream.read_to_string(&mut answer).await {
                    Ok(_) => Some(serde_json::from_str::<Reply>(&answer).unwrap()),
                    Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => None,
                    Err(error) => panic!("{error}"),
                }
            }
        };
        let too_long = raw(vec![b'x'; MAX_REQUEST * 4]).await;
        let refused = match &too_long {
            None => true,
            Some(Reply::Error(error)) => error.contains("one line"),
            Some(Reply::Ok(_)) => false,
        };
        assert!(refused, "{too_long:?}");
        let garbage = raw(b"{\"request\":\"reboot\"}\n".to_vec()).await;
        assert!(
            matches!(&garbage, Some(Reply::Error(e)) if e.starts_with("not a request")),
            "{garbage:?}"
        );
        // The node still answers.
        assert_eq!(
            ask(dir.path(), &Request::Peers).await.unwrap(),
            Reply::Ok("Peers".into())
        );
    }

    #[tokio::test]
    async fn a_second_node_in_the_same_directory_is_refused_and_a_stale_socket_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let socket = echo_node(dir.path());
        let error = ControlSocket::bind(dir.path()).err().unwrap().to_string();
        assert!(error.contains("another flnode is running"), "{error}");
        drop(socket);
        assert!(!path(dir.path()).exists(), "removed when dropped");
        // A socket file nobody listens on, as a node that died leaves it.
        drop(std::os::unix::net::UnixListener::bind(path(dir.path())).unwrap());
        let _socket = ControlSocket::bind(dir.path()).unwrap();
        assert!(matches!(
            ask(tempfile::tempdir().unwrap().path(), &Request::Status).await,
            Err(AskError::NotRunning(_))
        ));
    }
}
