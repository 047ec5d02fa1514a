//! How much written-but-unsent data the kernel may hold for one
//! connection (`TCP_NOTSENT_LOWAT`). Without a limit it holds as much as
//! the socket buffer takes, megabytes on a fast path: a setup message
//! written after them waits for all of them, however its queue put it
//! first. With one, writes stop at the limit and frames wait in flsignal's
//! queues instead, where signalling goes before relay frames and what
//! does not fit is dropped.

use std::os::fd::AsRawFd;

/// Default bytes of unsent data per connection: a setup waits behind at
/// most ~0.1 s of a node's default relay bandwidth, and the kernel still
/// has enough to keep a busy connection's link full between two writes.
pub const DEFAULT_UNSENT_LIMIT: usize = 128 * 1024;

/// Sets the limit on `socket`; 0 leaves the kernel's default.
pub fn limit_unsent(socket: &impl AsRawFd, bytes: usize) -> std::io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a plain setsockopt on a descriptor the caller owns, with a
    // pointer to an int that lives across the call and its exact size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsent_limit_of(socket: &impl AsRawFd) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as above, reading into a local int of the given size.
        let result = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(result, 0);
        value
    }

    #[test]
    fn the_limit_is_set_on_the_socket_and_zero_leaves_it_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let before = unsent_limit_of(&stream);
        limit_unsent(&stream, 0).unwrap();
        assert_eq!(unsent_limit_of(&stream), before);
        limit_unsent(&stream, DEFAULT_UNSENT_LIMIT).unwrap();
        assert_eq!(unsent_limit_of(&stream), DEFAULT_UNSENT_LIMIT as libc::c_int);
    }
}
