//! SO_REUSEPORT listening sockets: one socket per shard per listener, all bound on the main thread
//! before shards start so that bind errors fail the start and port 0 resolves to one port shared by
//! every shard. Each shard then owns its own sockets; the kernel spreads connections across them.
//!
//! SO_REUSEPORT would also let a second process of the same user join the port and take part of
//! its connections; an [`AddressGuard`] (an abstract Unix socket named after the address, which
//! only one process can hold and the kernel releases when the process ends) makes a second
//! process fail with "address in use" instead.
//!
//! A listener on a Unix domain socket ([`bind_unix`]) has one listening socket, which every
//! shard accepts on (SO_REUSEPORT does not apply to Unix sockets; the kernel hands each
//! connection to one waiting accept). A socket file left by a process that is gone is replaced;
//! one that a live process still serves is not.

use std::{
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::{
        linux::net::SocketAddrExt,
        unix::{fs::FileTypeExt, net},
    },
    path::{Path, PathBuf},
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::CoreError;

/// Pending-connection queue length asked of the kernel (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// The address a Unix socket listener and its connections have where an IP address is asked
/// for (`0.0.0.0:0`): their real address is the socket's path.
pub const UNIX_STAND_IN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// One listener's sockets, one per shard, bound to the same address.
#[derive(Debug)]
pub struct BoundListener {
    /// Listener name (from the config).
    pub name: String,
    /// The address actually bound (port 0 resolved); [`UNIX_STAND_IN`] for a Unix socket.
    pub address: SocketAddr,
    /// The socket file of a Unix socket listener.
    pub unix_path: Option<PathBuf>,
    /// One listening socket per shard, by shard index.
    pub sockets: Vec<Socket>,
    /// Keeps other processes off the address while it is held.
    pub guard: AddressGuard,
}

/// Holds an address for this process: while it lives no other layotto-rs process can serve
/// the same address. For a Unix socket listener it also removes the socket file when dropped.
#[derive(Debug)]
pub struct AddressGuard {
    #[expect(dead_code, reason = "held for its effect, never read")]
    held: net::UnixListener,
    socket_file: Option<PathBuf>,
}

impl AddressGuard {
    /// Takes `address` for this process, or fails with `AddrInUse` if another holds it.
    fn take(address: SocketAddr) -> std::io::Result<Self> {
        Self::take_name(&format!("layotto-rs/tcp/{address}"))
    }

    /// Takes the Unix socket `path` (named by a hash of its absolute path, which may be longer
    /// than an abstract name can be).
    fn take_unix(path: &Path) -> std::io::Result<Self> {
        let absolute = absolute_socket_path(path)?;
        let hash = fnv1a(absolute.as_os_str().as_encoded_bytes());
        Self::take_name(&format!("layotto-rs/unix/{hash:016x}"))
    }

    fn take_name(name: &str) -> std::io::Result<Self> {
        let name = net::SocketAddr::from_abstract_name(name)?;
        Ok(Self {
            held: net::UnixListener::bind_addr(&name)?,
            socket_file: None,
        })
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        if let Some(file) = &self.socket_file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// `path` with its directory resolved (symbolic links too), so that two spellings of one socket
/// file are one guard.
fn absolute_socket_path(path: &Path) -> std::io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file = path.file_name().ok_or_else(|| {
        std::io::Error::new(ErrorKind::InvalidInput, "the socket path names no file")
    })?;
    Ok(dir.canonicalize()?.join(file))
}

/// FNV-1a, 64 bits: a hash that stays the same across builds (std's may not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How often a bind to port 0 is tried again when the port the kernel picked is still held by
/// another layotto-rs process (which closed its sockets there and is about to let go of it).
const PORT_0_ATTEMPTS: usize = 8;

/// Binds `shards` SO_REUSEPORT sockets for `address`. With port 0 the first socket picks the port
/// and the others join it; a port another layotto-rs process still holds is given back and
/// another picked.
pub fn bind(name: &str, address: SocketAddr, shards: usize) -> Result<BoundListener, CoreError> {
    let attempts = if address.port() == 0 {
        PORT_0_ATTEMPTS
    } else {
        1
    };
    retry_while_in_use(attempts, || bind_once(name, address, shards))
}

/// Runs `bind` up to `attempts` times while it fails with "address in use".
fn retry_while_in_use<T>(
    attempts: usize,
    mut bind: impl FnMut() -> Result<T, CoreError>,
) -> Result<T, CoreError> {
    let mut attempt = 1;
    loop {
        match bind() {
            Err(CoreError::Bind { source, .. })
                if attempt < attempts && source.kind() == ErrorKind::AddrInUse =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn bind_once(name: &str, address: SocketAddr, shards: usize) -> Result<BoundListener, CoreError> {
    let bind_err = |source| CoreError::Bind {
        listener: name.to_owned(),
        address,
        source,
    };
    let mut actual = address;
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket = reuseport_socket(actual).map_err(bind_err)?;
        if actual.port() == 0 {
            actual = socket
                .local_addr()
                .map_err(bind_err)?
                .as_socket()
                .unwrap_or(actual);
        }
        sockets.push(socket);
    }
    let guard = AddressGuard::take(actual).map_err(|err| match err.kind() {
        std::io::ErrorKind::AddrInUse => bind_err(std::io::Error::new(
            err.kind(),
            "address in use: another layotto-rs process serves it",
        )),
        _ => bind_err(err),
    })?;
    Ok(BoundListener {
        name: name.to_owned(),
        address: actual,
        unix_path: None,
        sockets,
        guard,
    })
}

/// Binds the Unix domain socket `path` once and hands every one of `shards` shards a handle to
/// it. A socket file nobody serves any more is replaced; one a live process serves (another
/// layotto-rs, or any other server) fails with "address in use", and a file that is not a
/// socket is left alone and fails the bind.
pub fn bind_unix(name: &str, path: &Path, shards: usize) -> Result<BoundListener, CoreError> {
    let bind_err = |source| CoreError::BindUnix {
        listener: name.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    let in_use = |what: &str| {
        bind_err(std::io::Error::new(
            ErrorKind::AddrInUse,
            format!("address in use: {what} serves it"),
        ))
    };
    // The guard first: the file of a live layotto-rs is never touched.
    let mut guard = AddressGuard::take_unix(path).map_err(|err| match err.kind() {
        ErrorKind::AddrInUse => in_use("another layotto-rs process"),
        _ => bind_err(err),
    })?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match net::UnixStream::connect(path) {
            Ok(_) => return Err(in_use("another process")),
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(bind_err)?;
            }
            Err(err) => return Err(bind_err(err)),
        },
        Ok(_) => {
            return Err(bind_err(std::io::Error::new(
                ErrorKind::AlreadyExists,
                "the path exists and is not a socket; not replacing it",
            )));
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(bind_err(err)),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(bind_err)?;
    socket
        .bind(&socket2::SockAddr::unix(path).map_err(bind_err)?)
        .map_err(bind_err)?;
    guard.socket_file = Some(path.to_path_buf()); // ours now: removed when the guard goes
    socket.listen(BACKLOG).map_err(bind_err)?;
    // Every shard accepts on this one socket (its duplicates share the file's status flags).
    // glommio first tries an accept with O_NONBLOCK set for the call and then restores the
    // flags, so on a blocking socket one shard could restore "blocking" between another's set
    // and its accept, and that shard's thread then blocked in accept(2) for good (seen as a
    // hung unix_socket test). Non-blocking for good, every try is non-blocking.
    socket.set_nonblocking(true).map_err(bind_err)?;
    let mut sockets = Vec::with_capacity(shards);
    for _ in 1..shards {
        sockets.push(socket.try_clone().map_err(bind_err)?);
    }
    sockets.push(socket);
    Ok(BoundListener {
        name: name.to_owned(),
        address: UNIX_STAND_IN,
        unix_path: Some(path.to_path_buf()),
        sockets,
        guard,
    })
}

fn reuseport_socket(address: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_to_one_shared_port() {
        let bound = bind("t", "127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_ne!(bound.address.port(), 0);
        assert_eq!(bound.sockets.len(), 3);
        for socket in &bound.sockets {
            assert_eq!(
                socket.local_addr().unwrap().as_socket(),
                Some(bound.address)
            );
        }
    }

    #[test]
    fn a_second_binding_of_the_same_address_is_refused_while_the_first_holds_it() {
        let first = bind("first", "127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let err = bind("second", first.address, 2).unwrap_err().to_string();
        assert!(err.contains("address in use"), "{err}");
        let address = first.address;
        drop(first);
        assert!(bind("third", address, 1).is_ok());
    }

    #[test]
    fn a_port_in_use_is_tried_again_as_often_as_allowed_and_other_errors_are_not() {
        let failing = |kind: ErrorKind, failures: usize| {
            let mut calls = 0;
            move || {
                calls += 1;
                if calls <= failures {
                    Err(CoreError::Bind {
                        listener: "t".into(),
                        address: "127.0.0.1:0".parse().unwrap(),
                        source: std::io::Error::from(kind),
                    })
                } else {
                    Ok(calls)
                }
            }
        };
        assert_eq!(
            retry_while_in_use(3, failing(ErrorKind::AddrInUse, 2)).unwrap(),
            3
        );
        assert!(retry_while_in_use(2, failing(ErrorKind::AddrInUse, 2)).is_err());
        assert!(retry_while_in_use(3, failing(ErrorKind::PermissionDenied, 1)).is_err());
    }

    #[test]
    fn address_in_use_names_the_listener() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind("busy", taken.local_addr().unwrap(), 1).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listener \"busy\""), "{text}");
        assert!(
            text.contains(&taken.local_addr().unwrap().to_string()),
            "{text}"
        );
    }
}
