//! Turning a connection's copied bytes into TCP packets a pcap reader understands (sans-IO; runs
//! on the dump writer thread). Each dumped connection gets a synthetic three-way handshake when
//! it first appears, its bytes become segments with sequence numbers taken from their offset in
//! the stream (so bytes dropped under load show as a gap, not as corrupt data), and its close
//! becomes a FIN each way. Addresses and ports are the connection's real ones; Ethernet
//! addresses are zero.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use etherparse::PacketBuilder;

use crate::chain::Direction;

/// Largest TCP payload per packet (keeps IPv4 total length under 64 KiB).
const MAX_SEGMENT: usize = 32 * 1024;
/// Initial sequence numbers of the synthetic handshake.
const CLIENT_ISN: u32 = 1_000;
const SERVER_ISN: u32 = 5_000;
const WINDOW: u16 = 65_535;

/// One thing that happened to a dumped connection, as the shard reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyEvent {
    /// The connection (unique in the process).
    pub connection: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The address the client connected to.
    pub server: SocketAddr,
    /// Wall-clock time since the Unix epoch.
    pub at: Duration,
    /// What happened.
    pub kind: CopyEventKind,
}

/// What happened to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEventKind {
    /// Bytes that went one way, starting at `offset` in that direction's stream.
    Data {
        /// Which way.
        direction: Direction,
        /// Position of the first byte in this direction.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The connection ended.
    Closed {
        /// Bytes the client sent in all.
        from_client: u64,
        /// Bytes sent to the client in all.
        to_client: u64,
    },
}

/// A packet ready for a pcap record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Capture time since the Unix epoch.
    pub at: Duration,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// Builds packets for every connection it has seen.
#[derive(Default)]
pub struct Packetizer {
    open: HashSet<u64>,
}

impl Packetizer {
    /// The packets `event` stands for, appended to `out`.
    pub fn packets(&mut self, event: &CopyEvent, out: &mut Vec<Packet>) {
        let flow = Flow {
            client: event.client,
            server: event.server,
            at: event.at,
        };
        let first_sight = self.open.insert(event.connection);
        match &event.kind {
            CopyEventKind::Data {
                direction,
                offset,
                bytes,
            } => {
                if first_sight {
                    flow.handshake(out);
                }
                for (i, chunk) in bytes.chunks(MAX_SEGMENT).enumerate() {
                    let offset = offset + (i * MAX_SEGMENT) as u64;
                    flow.data(*direction, offset, chunk, out);
                }
            }
            CopyEventKind::Closed {
                from_client,
                to_client,
            } => {
                if !first_sight {
                    flow.close(*from_client, *to_client, out);
                }
                self.open.remove(&event.connection);
            }
        }
    }

    /// Connections seen and not yet closed.
    pub fn open_connections(&self) -> usize {
        self.open.len()
    }
}

/// Sequence number of the byte at `offset` after `isn` (SYN takes one).
fn seq(isn: u32, offset: u64) -> u32 {
    isn.wrapping_add(1).wrapping_add(offset as u32)
}

struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    at: Duration,
}

/// TCP flags of one packet.
#[derive(Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: Option<u32>,
    psh: bool,
    fin: bool,
}

impl Flow {
    fn handshake(&self, out: &mut Vec<Packet>) {
        let syn = |ack| Flags {
            syn: true,
            ack,
            ..Flags::default()
        };
        self.packet(true, CLIENT_ISN, syn(None), &[], out);
        self.packet(false, SERVER_ISN, syn(Some(CLIENT_ISN + 1)), &[], out);
        let ack = Flags {
            ack: Some(SERVER_ISN + 1),
            ..Flags::default()
        };
        self.packet(true, CLIENT_ISN + 1, ack, &[], out);
    }

    fn data(&self, direction: Direction, offset: u64, bytes: &[u8], out: &mut Vec<Packet>) {
        let from_client = direction == Direction::FromDownstream;
        let (isn, peer_isn) = if from_client {
            (CLIENT_ISN, SERVER_ISN)
        } else {
            (SERVER_ISN, CLIENT_ISN)
        };
        // The peer's bytes are acknowledged only as far as the handshake: the other direction's
        // progress is not known at this point of its stream.
        let flags = Flags {
            ack: Some(peer_isn + 1),
            psh: true,
            ..Flags::default()
        };
        self.packet(from_client, seq(isn, offset), flags, bytes, out);
    }

    fn close(&self, from_client: u64, to_client: u64, out: &mut Vec<Packet>) {
        let client_fin = seq(CLIENT_ISN, from_client);
        let server_fin = seq(SERVER_ISN, to_client);
        let fin = |ack| Flags {
            ack: Some(ack),
            fin: true,
            ..Flags::default()
        };
        self.packet(true, client_fin, fin(server_fin), &[], out);
        self.packet(false, server_fin, fin(client_fin.wrapping_add(1)), &[], out);
        let last = Flags {
            ack: Some(server_fin.wrapping_add(1)),
            ..Flags::default()
        };
        self.packet(true, client_fin.wrapping_add(1), last, &[], out);
    }

    fn packet(
        &self,
        from_client: bool,
        seq: u32,
        flags: Flags,
        payload: &[u8],
        out: &mut Vec<Packet>,
    ) {
        let (source, destination) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let ethernet = PacketBuilder::ethernet2([0; 6], [0; 6]);
        let ip = match (v4(source.ip()), v4(destination.ip())) {
            (Some(src), Some(dst)) => ethernet.ipv4(src.octets(), dst.octets(), 64),
            _ => ethernet.ipv6(v6(source.ip()), v6(destination.ip()), 64),
        };
        let mut tcp = ip.tcp(source.port(), destination.port(), seq, WINDOW);
        if flags.syn {
            tcp = tcp.syn();
        }
        if let Some(ack) = flags.ack {
            tcp = tcp.ack(ack);
        }
        if flags.psh {
            tcp = tcp.psh();
        }
        if flags.fin {
            tcp = tcp.fin();
        }
        let mut frame = Vec::with_capacity(tcp.size(payload.len()));
        tcp.write(&mut frame, payload)
            .expect("a segment of at most 32 KiB always fits a packet");
        out.push(Packet { at: self.at, frame });
    }
}

fn v4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    match ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
        IpAddr::V6(ip) => ip.octets(),
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    fn event(kind: CopyEventKind) -> CopyEvent {
        CopyEvent {
            connection: 7,
            client: "10.0.0.1:40000".parse().unwrap(),
            server: "10.0.0.2:8080".parse().unwrap(),
            at: Duration::from_secs(1_700_000_000),
            kind,
        }
    }

    fn data(direction: Direction, offset: u64, bytes: &[u8]) -> CopyEvent {
        event(CopyEventKind::Data {
            direction,
            offset,
            bytes: bytes.to_vec(),
        })
    }

    /// (source port, seq, flags "S/A/P/F", payload) of each packet.
    fn decode(packets: &[Packet]) -> Vec<(u16, u32, String, Vec<u8>)> {
        packets
            .iter()
            .map(|packet| {
                let sliced = SlicedPacket::from_ethernet(&packet.frame).unwrap();
                assert!(matches!(sliced.net, Some(NetSlice::Ipv4(_))));
                let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                    panic!("not TCP")
                };
                let flags: String = [
                    (tcp.syn(), 'S'),
                    (tcp.ack(), 'A'),
                    (tcp.psh(), 'P'),
                    (tcp.fin(), 'F'),
                ]
                .iter()
                .filter(|(set, _)| *set)
                .map(|(_, c)| *c)
                .collect();
                (
                    tcp.source_port(),
                    tcp.sequence_number(),
                    flags,
                    tcp.payload().to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn a_connection_becomes_handshake_segments_and_fins() {
        let mut builder = Packetizer::default();
        let mut packets = Vec::new();
        builder.packets(&data(Direction::FromDownstream, 0, b"hello"), &mut packets);
        builder.packets(&data(Direction::FromUpstream, 0, b"hi"), &mut packets);
        // Three bytes of the client's were dropped: the next segment keeps its real position.
        builder.packets(&data(Direction::FromDownstream, 8, b"!"), &mut packets);
        assert_eq!(builder.open_connections(), 1);
        builder.packets(
            &event(CopyEventKind::Closed {
                from_client: 9,
                to_client: 2,
            }),
            &mut packets,
        );
        assert_eq!(builder.open_connections(), 0);
        let decoded = decode(&packets);
        let expected: Vec<(u16, u32, &str, &[u8])> = vec![
            (40000, 1000, "S", b""),
            (8080, 5000, "SA", b""),
            (40000, 1001, "A", b""),
            (40000, 1001, "AP", b"hello"),
            (8080, 5001, "AP", b"hi"),
            (40000, 1009, "AP", b"!"),
            (40000, 1010, "AF", b""),
            (8080, 5003, "AF", b""),
            (40000, 1011, "A", b""),
        ];
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(port, seq, flags, payload)| (port, seq, flags.to_owned(), payload.to_vec()))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn large_reads_are_split_and_ipv6_is_kept() {
        let mut builder = Packetizer::default();
        let mut packets = Vec::new();
        builder.packets(
            &data(Direction::FromDownstream, 0, &[7u8; 70_000]),
            &mut packets,
        );
        let payloads: Vec<usize> = decode(&packets).iter().map(|p| p.3.len()).collect();
        assert_eq!(payloads, vec![0, 0, 0, 32_768, 32_768, 4_464]);

        let v6 = CopyEvent {
            client: "[::1]:5000".parse().unwrap(),
            server: "[::1]:6000".parse().unwrap(),
            connection: 8,
            ..data(Direction::FromDownstream, 0, b"x")
        };
        let mut packets = Vec::new();
        builder.packets(&v6, &mut packets);
        let sliced = SlicedPacket::from_ethernet(&packets[3].frame).unwrap();
        assert!(matches!(sliced.net, Some(NetSlice::Ipv6(_))));
        // A close for a connection never dumped writes nothing.
        let mut packets = Vec::new();
        builder.packets(
            &CopyEvent {
                connection: 9,
                ..event(CopyEventKind::Closed {
                    from_client: 1,
                    to_client: 1,
                })
            },
            &mut packets,
        );
        assert!(packets.is_empty());
    }
}
