//! The dump writer: one thread per `tcpcopy` filter that turns copy events into packets and
//! appends them to pcap files (unbuffered, so a dump is readable while it grows), rotating by
//! size and keeping the newest few. Shards hand it events
//! through a bounded channel and never wait for it; when it falls behind they drop (and count).

use std::{
    collections::VecDeque,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use crossbeam_channel::{Receiver, Sender};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use tracing::{info, warn};

use super::pcap::{CopyEvent, Packet, Packetizer};

/// Size of a pcap file header and of a record header.
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;

/// Where and how much to dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpFiles {
    /// The directory (created when the first packet is written).
    pub dir: PathBuf,
    /// A file is closed and the next one started when it would grow past this.
    pub max_file_size: u64,
    /// Older files beyond this many are deleted.
    pub max_files: usize,
}

/// What the writer has done, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Packets written.
    pub packets: AtomicU64,
    /// Events lost to a file error.
    pub write_errors: AtomicU64,
}

/// The running writer; dropping it writes what is queued, flushes and stops the thread.
pub struct DumpWriter {
    thread: Option<(JoinHandle<()>, Sender<()>)>,
    /// What it has written.
    pub stats: Arc<WriterStats>,
}

impl DumpWriter {
    /// Starts the thread; returns it with the sender shards use (`capacity` events queued at most).
    pub fn start(files: DumpFiles, capacity: usize) -> std::io::Result<(Self, Sender<CopyEvent>)> {
        let (sender, events) = crossbeam_channel::bounded(capacity);
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let stats = Arc::new(WriterStats::default());
        let thread = std::thread::Builder::new()
            .name("tcpcopy-writer".into())
            .spawn({
                let stats = stats.clone();
                move || Rotation::new(files, stats).run(events, stopped)
            })?;
        Ok((
            Self {
                thread: Some((thread, stop)),
                stats,
            },
            sender,
        ))
    }
}

impl Drop for DumpWriter {
    fn drop(&mut self) {
        if let Some((thread, stop)) = self.thread.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// The current file and the ones kept before it.
struct Rotation {
    files: DumpFiles,
    stats: Arc<WriterStats>,
    current: Option<(PcapWriter<File>, u64)>,
    kept: VecDeque<PathBuf>,
    sequence: u32,
}

impl Rotation {
    fn new(files: DumpFiles, stats: Arc<WriterStats>) -> Self {
        Self {
            files,
            stats,
            current: None,
            kept: VecDeque::new(),
            sequence: 0,
        }
    }

    /// Writes events until `stopped` closes (then what is queued) or every sender is gone.
    fn run(mut self, events: Receiver<CopyEvent>, stopped: Receiver<()>) {
        let mut packetizer = Packetizer::default();
        loop {
            crossbeam_channel::select! {
                recv(events) -> event => match event {
                    Ok(event) => self.dump(&mut packetizer, &event),
                    Err(_) => break,
                },
                recv(stopped) -> _ => {
                    while let Ok(event) = events.try_recv() {
                        self.dump(&mut packetizer, &event);
                    }
                    break;
                },
            }
        }
    }

    fn dump(&mut self, packetizer: &mut Packetizer, event: &CopyEvent) {
        let mut packets = Vec::new();
        packetizer.packets(event, &mut packets);
        for packet in &packets {
            if let Err(err) = self.write(packet) {
                warn!(dir = %self.files.dir.display(), error = %err, "tcpcopy cannot write its dump");
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.current = None;
            }
        }
    }

    fn write(&mut self, packet: &Packet) -> Result<(), String> {
        let record = RECORD_HEADER + packet.frame.len() as u64;
        let full = self.current.as_ref().is_some_and(|(_, size)| {
            *size > FILE_HEADER && size + record > self.files.max_file_size
        });
        if full || self.current.is_none() {
            self.open_next()?;
        }
        let (writer, size) = self.current.as_mut().expect("opened above");
        let length = packet.frame.len() as u32;
        writer
            .write_packet(&PcapPacket::new(packet.at, length, &packet.frame))
            .map_err(|err| err.to_string())?;
        *size += record;
        self.stats.packets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn open_next(&mut self) -> Result<(), String> {
        self.current = None;
        std::fs::create_dir_all(&self.files.dir).map_err(|err| err.to_string())?;
        self.sequence += 1;
        let path = dump_path(&self.files.dir, std::process::id(), self.sequence);
        let file = File::create(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        let writer = PcapWriter::new(file).map_err(|err| err.to_string())?;
        info!(file = %path.display(), "tcpcopy dumping to a new file");
        self.current = Some((writer, FILE_HEADER));
        self.kept.push_back(path);
        while self.kept.len() > self.files.max_files.max(1) {
            if let Some(old) = self.kept.pop_front() {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }
}

/// The `sequence`th dump file of process `pid`.
fn dump_path(dir: &Path, pid: u32, sequence: u32) -> PathBuf {
    dir.join(format!("tcpcopy-{pid}-{sequence:04}.pcap"))
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use pcap_file::pcap::PcapReader;

    use super::*;
    use crate::{chain::Direction, tcpcopy::pcap::CopyEventKind};

    fn data(offset: u64, len: usize) -> CopyEvent {
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        CopyEvent {
            connection: 1,
            client,
            server: "127.0.0.1:2".parse().unwrap(),
            at: Duration::from_secs(1),
            kind: CopyEventKind::Data {
                direction: Direction::FromDownstream,
                offset,
                bytes: vec![1; len],
            },
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = DumpFiles {
            dir: dir.path().join("dumps"),
            max_file_size: 2_000,
            max_files: 2,
        };
        let (writer, sender) = DumpWriter::start(files, 64).unwrap();
        for i in 0..10 {
            sender.send(data(i * 500, 500)).unwrap();
        }
        drop(sender);
        let stats = writer.stats.clone();
        drop(writer);
        // 3 handshake packets + 10 data packets.
        assert_eq!(stats.packets.load(Ordering::Relaxed), 13);
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("dumps"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let pid = std::process::id();
        // A data record is 570 bytes, a handshake record 70: files of 3 data records (the first
        // with the handshake too), so 4 files were written and the newest 2 kept.
        assert_eq!(
            names,
            vec![
                format!("tcpcopy-{pid}-0003.pcap"),
                format!("tcpcopy-{pid}-0004.pcap")
            ]
        );
        for name in names {
            let file = File::open(dir.path().join("dumps").join(name)).unwrap();
            let size = file.metadata().unwrap().len();
            assert!(size <= 2_000, "{size}");
            let mut reader = PcapReader::new(file).unwrap();
            while let Some(packet) = reader.next_packet() {
                packet.unwrap();
            }
        }
    }
}
