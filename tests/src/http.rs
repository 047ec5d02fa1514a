//! Plain HTTP GET over a raw TCP stream, for the server's pages.

use tokio::net::TcpStream;

use crate::PATIENCE;

/// Plain HTTP GET over a raw TCP stream; returns the status line and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let (head, body) = http_get_head(addr, path).await?;
    Ok((head.lines().next().unwrap_or_default().to_owned(), body))
}

/// Plain HTTP GET over a raw TCP stream; returns the whole response head
/// (status line and headers) and the body.
pub async fn http_get_head(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response)).await??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((head.to_owned(), body.to_owned()))
}
