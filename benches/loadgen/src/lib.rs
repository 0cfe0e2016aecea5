//! tollgate's socket load generator: `tollgate bench`, and the
//! `tollgate-loadgen` executable.
//!
//! It measures the daemon from the outside, as a client sees it. The real
//! daemon runs as a child process (`<tollgate> serve`, on a configuration and
//! data directory in a fresh temp dir; ready when it says `READY=1` on
//! `NOTIFY_SOCKET`, as it tells systemd). The key population is made over its
//! HTTP API (`POST /v1/keys/import`, 10,000 keys a request) with the bootstrap
//! admin token the daemon generates, and N connections × D requests in flight
//! are driven over its socket, one client thread per connection. The server's
//! CPU per answer is read from the child's `/proc/PID/stat` (user + system
//! time over the measured run).
//!
//! The same frames can be sent to a bare echo server ([`echo`]): the same
//! handshake and frames (tollgate-protocol's codec), read and answered in
//! batches, one write per batch as the daemon does, but every verify gets a
//! canned allow verdict. Its throughput is the protocol-and-socket ceiling
//! the daemon is reported against, measured in the same run on the same
//! machine; its CPU is that of its runtime's threads in this process.
//!
//! The client is a lean pipelining loop over the protocol crate's codec
//! rather than `Client::verify_many`: that method copies every answer into
//! owned strings, and since the generator shares the CPU with the server,
//! client-side allocations would be charged to the server's numbers. Every
//! answer's message type and outcome are checked; one in [`FULL_DECODE_EVERY`]
//! is fully decoded.

pub mod daemon;
pub mod echo;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tollgate_protocol as proto;
use tollgate_protocol::Request;

pub use daemon::Daemon;

/// One answer in this many is fully decoded and checked, the rest only by
/// message type and outcome byte.
pub const FULL_DECODE_EVERY: u64 = 1024;

/// The daemon's configuration in a bench: the Pro tier's per-minute team
/// limit lifted, so only the keys' own limits could deny. The same file is
/// the tests' and the criterion benches' fixture.
pub const PRO_UNLIMITED: &str = include_str!("../../fixtures/pro_unlimited.toml");

/// Which server(s) to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Only the echo server (the protocol and socket ceiling).
    Echo,
    /// Only the daemon.
    Tollgate,
    /// Echo, then the daemon, and the ratio.
    Both,
}

/// Which credentials the requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialKind {
    /// API keys.
    Key,
    /// JWTs issued by the daemon.
    Jwt,
}

/// The options of `tollgate bench` and `tollgate-loadgen`.
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// The daemon's socket path [default: in a fresh temp dir]. The echo
    /// server listens in the temp dir.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Connections, one client thread each.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 64)]
    pub depth: usize,
    /// Seconds measured per server.
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub duration: Duration,
    /// Credentials in the population.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Which server(s) to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub mode: Mode,
    /// Which credentials the requests carry.
    #[arg(long = "credential-kind", value_name = "CREDENTIAL_KIND", value_enum, default_value = "key")]
    pub kind: CredentialKind,
}

/// `--duration`: a positive number of seconds.
fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s}: must be a positive number of seconds")),
    }
}

/// The outcome of one measured run.
#[derive(Debug)]
pub struct Report {
    /// Answers received.
    pub answers: u64,
    /// Answers that were denies (should be 0: the population never denies).
    pub denies: u64,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Per-request latency.
    pub latency: Histogram,
    /// CPU time (user + system) of the client threads, and of the server
    /// under test, over the run; `None` without `/proc`.
    pub cpu: Option<(Duration, Duration)>,
}

impl Report {
    /// Answers per second.
    pub fn throughput(&self) -> f64 {
        self.answers as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the bench as configured, with `tollgate` as the daemon's executable,
/// and prints the report to stdout (progress goes to stderr).
pub fn run(tollgate: &Path, opts: &Options) -> anyhow::Result<()> {
    if opts.connections == 0 || opts.depth == 0 || opts.keys == 0 {
        bail!("--connections, --depth and --keys must be at least 1");
    }
    if opts.depth > 60_000 {
        bail!("--depth: at most 60000");
    }
    if opts.duration.is_zero() {
        bail!("--duration must be a positive number of seconds");
    }
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run_in(tollgate, opts, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(tollgate: &Path, opts: &Options, dir: &Path) -> anyhow::Result<()> {
    let socket = opts.socket.clone().unwrap_or_else(|| dir.join("tollgate.sock"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "tollgate bench: {} connections x {} in flight, {} s per server, {} {} credentials, {cores} cores shared by client and server",
        opts.connections,
        opts.depth,
        opts.duration.as_secs_f64(),
        opts.keys,
        match opts.kind {
            CredentialKind::Key => "api-key",
            CredentialKind::Jwt => "jwt",
        }
    );

    let daemon = if opts.mode != Mode::Echo {
        let d = Daemon::start(tollgate, &dir.join("daemon"), &socket)?;
        let started = Instant::now();
        let creds = d.population(opts.keys, opts.kind)?;
        eprintln!(
            "created {} credentials over HTTP in {:.1} s (tollgate pid {})",
            creds.len(),
            started.elapsed().as_secs_f64(),
            d.pid()
        );
        Some((d, creds))
    } else {
        None
    };
    let credentials = match &daemon {
        Some((_, creds)) => Frames::encode(creds)?,
        // Same lengths and shapes as real keys, without a daemon.
        None => Frames::encode(&(0..opts.keys).map(|i| format!("tg_{i:030}abcdef")).collect::<Vec<_>>())?,
    };
    let credentials = Arc::new(credentials);

    let echo = if opts.mode != Mode::Tollgate {
        let server = echo::Echo::start(&dir.join("echo.sock"))?;
        let r = drive("echo", server.path(), &credentials, opts, &|| server.cpu());
        server.stop();
        let r = r?;
        print_report("echo", &r, None);
        Some(r)
    } else {
        None
    };
    if let Some((d, _)) = daemon {
        let r = drive("tollgate", &socket, &credentials, opts, &|| d.cpu());
        // Stopped either way; a run's failure is the more useful error.
        let stopped = d.stop();
        let r = r?;
        stopped?;
        print_report("tollgate", &r, echo.as_ref());
    }
    Ok(())
}

/// Drives `opts.connections` client threads against `socket` for
/// `opts.duration`, printing progress to stderr each second; `server_cpu`
/// reads the CPU time the server has used so far.
fn drive(
    label: &str,
    socket: &Path,
    creds: &Arc<Frames>,
    opts: &Options,
    server_cpu: &dyn Fn() -> Option<Duration>,
) -> anyhow::Result<Report> {
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let server_before = server_cpu();
    let start = Instant::now();
    let deadline = start + opts.duration;
    let threads: Vec<_> = (0..opts.connections)
        .map(|i| {
            let (socket, creds, done) = (socket.to_owned(), creds.clone(), done.clone());
            let depth = opts.depth;
            std::thread::Builder::new()
                .name(format!("bench-client-{i}"))
                .spawn(move || client_loop(&socket, &creds, depth, deadline, &done, i as u64))
        })
        .collect::<Result<_, _>>()
        .context("cannot start client threads")?;
    let progress = {
        let (done, finished, label) = (done.clone(), finished.clone(), label.to_owned());
        std::thread::spawn(move || {
            let mut last = 0;
            let mut tick = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if tick.elapsed() >= Duration::from_secs(1) {
                    let now = done.load(Ordering::Relaxed);
                    let rate = (now - last) as f64 / tick.elapsed().as_secs_f64();
                    eprint!(
                        "\r{label}: {:>4.0} s  {:>12} answers  {:>10.0} req/s   ",
                        start.elapsed().as_secs_f64(),
                        now,
                        rate
                    );
                    last = now;
                    tick = Instant::now();
                }
            }
            eprintln!();
        })
    };
    let mut latency = Histogram::default();
    let mut denies = 0;
    let mut failure = None;
    let mut client_cpu = Some(Duration::ZERO);
    for t in threads {
        match t.join() {
            Ok(Ok((h, d, cpu))) => {
                latency.merge(&h);
                denies += d;
                client_cpu = client_cpu.zip(cpu).map(|(a, b)| a + b);
            }
            Ok(Err(e)) => failure = Some(anyhow::Error::from(e)),
            Err(_) => failure = Some(anyhow::anyhow!("a client thread panicked")),
        }
    }
    let elapsed = start.elapsed();
    let server_after = server_cpu();
    finished.store(true, Ordering::Relaxed);
    let _ = progress.join();
    if let Some(e) = failure {
        return Err(e.context(format!("{label}: a connection failed")));
    }
    let server = server_after.zip(server_before).map(|(after, before)| after.saturating_sub(before));
    let cpu = client_cpu.zip(server);
    Ok(Report { answers: latency.count(), denies, elapsed, latency, cpu })
}

/// One connection: keeps `depth` requests in flight until `deadline`, then
/// collects the answers still owed. Request ids are slot numbers (1..=depth),
/// so matching an answer to its send time is an index, whatever the order.
fn client_loop(
    path: &Path,
    creds: &Frames,
    depth: usize,
    deadline: Instant,
    done: &AtomicU64,
    seed: u64,
) -> io::Result<(Histogram, u64, Option<Duration>)> {
    let mut s = UnixStream::connect(path)?;
    let mut hello = Vec::new();
    proto::encode_handshake(proto::PROTOCOL_VERSION, &mut hello);
    s.write_all(&hello)?;
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    loop {
        let n = s.read(rbuf.get_mut(filled..).unwrap_or_default())?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
        }
        filled += n;
        if let Some((reply, used)) = proto::decode_handshake_reply(rbuf.get(..filled).unwrap_or_default())? {
            if let proto::HandshakeReply::Rejected(e) = reply {
                return Err(io::Error::other(e.into_owned()));
            }
            rbuf.copy_within(used..filled, 0);
            filled -= used;
            break;
        }
    }

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seed.wrapping_add(1)).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut hist = Histogram::default();
    let mut sent_at = vec![Instant::now(); depth];
    let mut wbuf = Vec::with_capacity(depth * 128);
    let mut next = creds.get(rng.below(creds.len()));
    // Slots are below depth <= 60000, so the id fits.
    let mut send = |slot: usize, wbuf: &mut Vec<u8>| {
        append_with_id(next, slot as u32 + 1, wbuf);
        next = creds.get(rng.below(creds.len()));
    };
    let now = Instant::now();
    for (slot, t) in sent_at.iter_mut().enumerate() {
        send(slot, &mut wbuf);
        *t = now;
    }
    s.write_all(&wbuf)?;
    let mut outstanding = depth;
    let mut sending = true;
    let mut denies = 0;
    let mut seen = 0u64;
    while outstanding > 0 {
        let n = s.read(rbuf.get_mut(filled..).unwrap_or_default())?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        filled += n;
        let now = Instant::now();
        if sending && now >= deadline {
            sending = false;
        }
        wbuf.clear();
        let mut pos = 0;
        let mut answered = 0;
        while let Some(len) = proto::check_frame(rbuf.get(pos..filled).unwrap_or_default())? {
            let frame = rbuf.get(pos..pos + len).unwrap_or_default();
            pos += len;
            seen += 1;
            let id = proto::frame_request_id(frame).unwrap_or(0);
            match frame.get(proto::LENGTH_PREFIX_LEN..proto::LENGTH_PREFIX_LEN + 1) {
                Some(&[0x81]) => {}
                _ => {
                    let detail = proto::decode_response(frame).map(|(_, r)| format!("{r:?}"));
                    return Err(io::Error::other(format!("unexpected answer to request {id}: {detail:?}")));
                }
            }
            // The verdict's outcome byte follows the 9-byte header: 1 allow, 2 deny.
            if frame.get(proto::LENGTH_PREFIX_LEN + proto::HEADER_LEN) != Some(&1) {
                denies += 1;
            }
            if seen.is_multiple_of(FULL_DECODE_EVERY) {
                proto::decode_response(frame)?;
            }
            let slot = (id as usize).wrapping_sub(1);
            let Some(t) = sent_at.get_mut(slot) else {
                return Err(io::Error::other(format!("answer to unknown request id {id}")));
            };
            hist.record(now.saturating_duration_since(*t).as_nanos() as u64);
            answered += 1;
            if sending {
                send(slot, &mut wbuf);
                *t = now;
            } else {
                outstanding -= 1;
            }
        }
        rbuf.copy_within(pos..filled, 0);
        filled -= pos;
        done.fetch_add(answered, Ordering::Relaxed);
        if !wbuf.is_empty() {
            s.write_all(&wbuf)?;
        }
    }
    // This thread's own CPU time: it started with the run, so all of it is the run's.
    Ok((hist, denies, cpu_of("/proc/thread-self/stat")))
}

/// User + system time from a `/proc/.../stat` file (a process's counts its
/// threads, exited ones included). Assumes the kernel's `USER_HZ` of 100,
/// which every Linux architecture tollgate targets uses.
pub fn cpu_of(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may contain spaces: fields are
    // counted from the last ')'. utime and stime are fields 14 and 15.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Every credential's verify request, encoded once, each at a multiple of one
/// stride (a whole number of cache lines) of one buffer.
///
/// A client sends bytes it has at hand; a bench client that picked a random
/// `String` out of a hundred thousand and encoded it would pay two cache misses
/// per request that no real client pays, on the same cores as the server. Here
/// a request is one copy, and the next request's first line is loaded while the
/// current one is sent. The server still sees a uniformly random key per
/// request, so its index misses are all there.
pub struct Frames {
    buf: Vec<u8>,
    stride: usize,
    count: usize,
}

impl Frames {
    /// Encodes a verify request for `documents:read` for each credential.
    pub fn encode(credentials: &[String]) -> io::Result<Frames> {
        let mut one = Vec::new();
        let mut frames = Vec::with_capacity(credentials.len());
        for cred in credentials {
            one.clear();
            let req = proto::VerifyRequest::new(cred).permissions(&[("documents", "read")]);
            proto::encode_request(0, &Request::Verify(req), &mut one)?;
            frames.push(one.clone());
        }
        let stride = frames.iter().map(Vec::len).max().unwrap_or(0).next_multiple_of(64);
        let mut buf = vec![0; stride * frames.len()];
        for (chunk, frame) in buf.chunks_exact_mut(stride.max(1)).zip(&frames) {
            chunk.get_mut(..frame.len()).unwrap_or_default().copy_from_slice(frame);
        }
        Ok(Frames { buf, stride, count: frames.len() })
    }

    /// How many frames.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frame `i` (request id 0). Reading its length prefix is what starts
    /// loading it, so a caller gets the next frame one request ahead.
    pub fn get(&self, i: usize) -> &[u8] {
        let at = i * self.stride;
        let prefix = self.buf.get(at..at + proto::LENGTH_PREFIX_LEN).unwrap_or(&[0; 4]);
        let len = u32::from_be_bytes(prefix.try_into().unwrap_or_default()) as usize;
        self.buf.get(at..at + proto::LENGTH_PREFIX_LEN + len).unwrap_or_default()
    }
}

/// Appends `frame` to `out` with request id `id`.
fn append_with_id(frame: &[u8], id: u32, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(frame);
    let id_at = start + proto::LENGTH_PREFIX_LEN + 1;
    if let Some(slot) = out.get_mut(id_at..id_at + 4) {
        slot.copy_from_slice(&id.to_be_bytes());
    }
}

/// xorshift64*: a fast, good-enough generator for picking keys.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((u128::from(x) * n as u128) >> 64) as usize
    }
}

fn print_report(label: &str, r: &Report, echo: Option<&Report>) {
    let us = |q: f64| r.latency.quantile(q) as f64 / 1000.0;
    println!(
        "{label:>8}: {:>12.0} req/s  ({} answers in {:.2} s, {} denies)  latency p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
        r.throughput(),
        r.answers,
        r.elapsed.as_secs_f64(),
        r.denies,
        us(0.5),
        us(0.99),
        us(0.999),
        r.latency.max() as f64 / 1000.0,
    );
    if let Some((client, server)) = r.cpu {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / (r.answers.max(1) as f64);
        println!(
            "     cpu: {:.2} us per answer in the server, {:.2} us in the client threads ({:.2} + {:.2} cores)",
            per(server),
            per(client),
            server.as_secs_f64() / r.elapsed.as_secs_f64(),
            client.as_secs_f64() / r.elapsed.as_secs_f64(),
        );
    }
    if let Some(e) = echo {
        let p50 = |h: &Histogram| h.quantile(0.5) as f64;
        println!(
            "   ratio: tollgate = {:.1}% of the echo ceiling; p50 latency {:.2}x echo's",
            100.0 * r.throughput() / e.throughput().max(1e-9),
            p50(&r.latency) / p50(&e.latency).max(1.0),
        );
    }
}

/// A log-linear latency histogram in nanoseconds, HDR style: values under 64
/// are exact, above that each power of two is split into 32 buckets, so any
/// reported value is within about 3% of the truth.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const LINEAR: u64 = 64;

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: vec![0; LINEAR as usize + (64 - 6) * SUB], count: 0, max: 0 }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= 6
        let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
        LINEAR as usize + (exp as usize - 6) * SUB + sub
    }

    /// The smallest value of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < LINEAR as usize {
            return i as u64;
        }
        let exp = (i - LINEAR as usize) / SUB + 6;
        let sub = ((i - LINEAR as usize) % SUB) as u64;
        (1u64 << exp) | (sub << (exp as u32 - SUB_BITS))
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        if let Some(b) = self.buckets.get_mut(Self::index(v)) {
            *b += 1;
        }
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1), to the bucket's precision.
    pub fn quantile(&self, q: f64) -> u64 {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_to_their_credentials_with_the_id_they_are_sent_with() {
        let creds: Vec<String> = ["tg_short", "tg_a_much_longer_credential_than_the_first_one_of_all", "x"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let frames = Frames::encode(&creds).unwrap();
        assert_eq!(frames.len(), 3);
        let mut out = Vec::new();
        for (i, cred) in creds.iter().enumerate().rev() {
            append_with_id(frames.get(i), 1000 + i as u32, &mut out);
            let frame = out.get(out.len() - frames.get(i).len()..).unwrap();
            let (id, req) = proto::decode_request(frame).unwrap();
            assert_eq!(id, 1000 + i as u32);
            let Request::Verify(v) = req else { panic!("{req:?}") };
            assert_eq!(v.credential_str(), Some(cred.as_str()));
            assert_eq!(v.permissions.iter().collect::<Vec<_>>(), [("documents", "read")]);
        }
        // Back to back, as a client writes them: every frame is whole.
        let mut pos = 0;
        while let Some(len) = proto::check_frame(&out[pos..]).unwrap() {
            pos += len;
        }
        assert_eq!(pos, out.len());
    }

    #[test]
    fn histogram_quantiles_are_within_a_few_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.max(), 1_000_000);
        for v in [0, 1, 63, 64, 65, 1 << 20, u64::MAX] {
            let i = Histogram::index(v);
            assert!(Histogram::value(i) <= v, "{v}");
        }
    }

    #[test]
    fn durations_are_positive_seconds() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("5"), Ok(Duration::from_secs(5)));
        for bad in ["0", "-1", "abc", "", "inf", "NaN"] {
            assert!(seconds(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_is_read_after_the_command_name() {
        // A command name with spaces and parentheses, as the kernel writes it.
        let dir = std::env::temp_dir().join(format!("tollgate-loadgen-stat-{}", std::process::id()));
        std::fs::write(&dir, "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3").unwrap();
        let cpu = cpu_of(dir.to_str().unwrap());
        let _ = std::fs::remove_file(&dir);
        assert_eq!(cpu, Some(Duration::from_millis(3250)));
        assert_eq!(cpu_of("/nonexistent/stat"), None);
        assert!(cpu_of("/proc/self/stat").is_some());
    }
}
