//! SO_REUSEPORT listening sockets: one socket per shard per listener, all bound on the main thread
//! before shards start so that bind errors fail the start and port 0 resolves to one port shared by
//! every shard. Each shard then owns its own sockets; the kernel spreads connections across them.
//!
//! SO_REUSEPORT would also let a second process of the same user join the port and take part of
//! its connections; an [`AddressGuard`] (an abstract Unix socket named after the address, which
//! only one process can hold and the kernel releases when the process ends) makes a second
//! process fail with "address in use" instead.

use std::{
    net::SocketAddr,
    os::{linux::net::SocketAddrExt, unix::net},
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::CoreError;

/// Pending-connection queue length asked of the kernel (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// One listener's sockets, one per shard, bound to the same address.
#[derive(Debug)]
pub struct BoundListener {
    /// Listener name (from the config).
    pub name: String,
    /// The address actually bound (port 0 resolved).
    pub address: SocketAddr,
    /// One listening socket per shard, by shard index.
    pub sockets: Vec<Socket>,
    /// Keeps other processes off the address while it is held.
    pub guard: AddressGuard,
}

/// Holds an address for this process: while it lives no other layotto-rs process can serve
/// the same address.
#[derive(Debug)]
pub struct AddressGuard(
    #[expect(dead_code, reason = "held for its effect, never read")] net::UnixListener,
);

impl AddressGuard {
    /// Takes `address` for this process, or fails with `AddrInUse` if another holds it.
    fn take(address: SocketAddr) -> std::io::Result<Self> {
        let name = net::SocketAddr::from_abstract_name(format!("layotto-rs/tcp/{address}"))?;
        net::UnixListener::bind_addr(&name).map(Self)
    }
}

/// Binds `shards` SO_REUSEPORT sockets for `address`. With port 0 the first socket picks the port
/// and the others join it.
pub fn bind(name: &str, address: SocketAddr, shards: usize) -> Result<BoundListener, CoreError> {
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
