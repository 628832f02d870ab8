//! End-to-end tests of `tcpcopy`: traffic through layotto-rs (tcp_proxy and gRPC listeners)
//! is dumped to pcap files that are read back with a pcap parser (and `tshark` when installed);
//! the bytes each way and the addresses must match what went over the sockets.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    path::Path,
};

use common::*;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use layotto_proto::runtime::SayHelloRequest;
use pcap_file::pcap::PcapReader;
use serde_json::{Value, json};

/// A tcpcopy filter dumping into `dir`, always sampling, with the given fuse limits.
fn tcpcopy(dir: &Path, cpu_max: u32, mem_max: u32) -> Value {
    json!({"type": "tcpcopy", "config": {
        "strategy": {"switch": "ON", "interval": 0, "duration": 3600,
                     "cpu_max_rate": cpu_max, "mem_max_rate": mem_max},
        "dump_dir": dir
    }})
}

/// Puts `filter` in front of the terminal of the config's first listener.
fn with_filter(mut config: Value, filter: Value) -> Value {
    let filters = config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"]
        .as_array_mut()
        .unwrap();
    filters.insert(0, filter);
    config
}

/// One dumped TCP stream: the bytes each way, by sequence number, and its addresses.
#[derive(Default, Debug)]
struct Stream {
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    from_client: BTreeMap<u32, Vec<u8>>,
    to_client: BTreeMap<u32, Vec<u8>>,
    fins: usize,
}

impl Stream {
    fn bytes(segments: &BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
        segments.values().flatten().copied().collect()
    }
}

/// Every stream in the pcap files of `dir`, keyed by the client's port; `server` tells which
/// end is the listener.
fn read_dumps(dir: &Path, server: SocketAddr) -> BTreeMap<u16, Stream> {
    let mut streams: BTreeMap<u16, Stream> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let mut reader = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.unwrap();
            let sliced = SlicedPacket::from_ethernet(&packet.data).unwrap();
            let Some(NetSlice::Ipv4(ip)) = sliced.net else {
                panic!("expected IPv4")
            };
            let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                panic!("expected TCP")
            };
            let source = SocketAddr::from((ip.header().source_addr(), tcp.source_port()));
            let destination =
                SocketAddr::from((ip.header().destination_addr(), tcp.destination_port()));
            let (client, from_client) = if destination == server {
                (source, true)
            } else {
                assert_eq!(
                    source, server,
                    "a packet that is not to or from the listener"
                );
                (destination, false)
            };
            let stream = streams.entry(client.port()).or_default();
            stream.client = Some(client);
            stream.server = Some(server);
            stream.fins += usize::from(tcp.fin());
            if !tcp.payload().is_empty() {
                let side = if from_client {
                    &mut stream.from_client
                } else {
                    &mut stream.to_client
                };
                side.insert(tcp.sequence_number(), tcp.payload().to_vec());
            }
        }
    }
    streams
}

/// `tshark -r` on every dump, when tshark is installed: it must read them without complaint.
#[expect(
    clippy::print_stderr,
    reason = "tells whoever runs the test what was skipped"
)]
fn tshark_reads(dir: &Path) {
    if std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("tshark not installed: dumps checked with the pcap parser only");
        return;
    }
    for file in std::fs::read_dir(dir).unwrap() {
        let output = std::process::Command::new("tshark")
            .arg("-r")
            .arg(file.unwrap().path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn proxied_bytes_are_dumped_both_ways_with_real_addresses() {
    let dumps = tempfile::tempdir().unwrap();
    let upstream = echo_server();
    let config = with_filter(
        proxy_config(&[("copied", &[upstream], json!({}))], json!({})),
        tcpcopy(dumps.path(), 100, 100),
    );
    let mut layotto = Layotto::with_shards(&config, 2);
    let listener = layotto.address("copied");

    let mut sent = BTreeMap::new();
    for (i, size) in [1usize, 64 * 1024, 300 * 1024].into_iter().enumerate() {
        let data = pattern(size, i as u64);
        let stream = TcpStream::connect(listener).unwrap();
        let port = stream.local_addr().unwrap().port();
        let writer = {
            let (mut stream, data) = (stream.try_clone().unwrap(), data.clone());
            std::thread::spawn(move || {
                stream.write_all(&data).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut echoed = Vec::new();
        (&stream).read_to_end(&mut echoed).unwrap();
        writer.join().unwrap();
        assert_eq!(echoed, data);
        sent.insert(port, data);
    }
    let summary = layotto.stop_and_summary("copied");
    let total: u64 = sent.values().map(|d| 2 * d.len() as u64).sum();
    assert_eq!(
        counter(&summary, "tcpcopy_copied_bytes"),
        total,
        "{summary:?}"
    );
    assert_eq!(counter(&summary, "tcpcopy_dropped_bytes"), 0, "{summary:?}");
    // tcpcopy needs every byte in user space: even the 300 KiB transfer is never spliced.
    assert_eq!(counter(&summary, "spliced_directions"), 0, "{summary:?}");

    let streams = read_dumps(dumps.path(), listener);
    assert_eq!(streams.len(), 3, "{:?}", streams.keys());
    for (port, data) in &sent {
        let stream = &streams[port];
        assert_eq!(stream.client.unwrap().ip(), listener.ip());
        assert_eq!(Stream::bytes(&stream.from_client), *data, "client {port}");
        assert_eq!(Stream::bytes(&stream.to_client), *data, "echo to {port}");
        assert_eq!(stream.fins, 2, "a FIN each way for {port}");
    }
    tshark_reads(dumps.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_traffic_is_dumped_too() {
    let dumps = tempfile::tempdir().unwrap();
    let config = with_filter(
        grpc_config(hello_and_state(), json!({})),
        tcpcopy(dumps.path(), 100, 100),
    );
    let mut layotto = Layotto::start(&config);
    let listener = layotto.address("grpc");
    let mut client = runtime_client(listener).await;
    let reply = client
        .say_hello(SayHelloRequest {
            service_name: "quick_start_demo".into(),
            name: "pcap".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.hello, "greeting, pcap");
    drop(client);
    layotto.stop_and_summary("grpc");
    let streams = read_dumps(dumps.path(), listener);
    let stream = streams.values().next().expect("the connection was dumped");
    let request = Stream::bytes(&stream.from_client);
    assert!(
        request.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        "the HTTP/2 preface"
    );
    let contains =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&request, b"pcap"), "the request message");
    assert!(
        contains(&Stream::bytes(&stream.to_client), b"greeting, pcap"),
        "the reply"
    );
    tshark_reads(dumps.path());
}

#[test]
fn a_blown_fuse_dumps_nothing_and_the_switch_off_dumps_nothing() {
    let upstream = echo_server();
    for filter_config in ["fuse", "switch"] {
        let dumps = tempfile::tempdir().unwrap();
        let mut filter = tcpcopy(dumps.path(), 100, 0); // no machine uses 0% of its memory
        if filter_config == "switch" {
            filter = tcpcopy(dumps.path(), 100, 100);
            filter["config"]["strategy"]["switch"] = json!("OFF");
        }
        let config = with_filter(
            proxy_config(&[("copied", &[upstream], json!({}))], json!({})),
            filter,
        );
        let mut layotto = Layotto::start(&config);
        let data = pattern(10_000, 1);
        assert_eq!(round_trip(layotto.address("copied"), &data), data);
        let summary = layotto.stop_and_summary("copied");
        assert_eq!(
            counter(&summary, "tcpcopy_copied_bytes"),
            0,
            "{filter_config}: {summary:?}"
        );
        assert_eq!(
            std::fs::read_dir(dumps.path()).unwrap().count(),
            0,
            "{filter_config}"
        );
    }
}

#[test]
fn bad_strategies_name_their_keys() {
    let upstream = echo_server();
    let dumps = tempfile::tempdir().unwrap();
    let mut filter = tcpcopy(dumps.path(), 100, 100);
    filter["config"]["strategy"]["switch"] = json!("MAYBE");
    filter["config"]["strategy"]["cpu_max_rate"] = json!("lots");
    let config = with_filter(
        proxy_config(&[("copied", &[upstream], json!({}))], json!({})),
        filter,
    );
    let problems = config_problems(&config).join("\n");
    assert!(
        problems.contains("filters[0].config.strategy.switch: \"MAYBE\": expected ON or OFF"),
        "{problems}"
    );
    assert!(
        problems.contains("filters[0].config.strategy.cpu_max_rate: invalid \"lots\""),
        "{problems}"
    );
}
