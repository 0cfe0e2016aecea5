//! One connection verifying one credential over the socket in a loop, one
//! request at a time; prints the latency distribution. The probe of
//! `benches/admin-isolation.sh`.
//!
//! ```text
//! cargo run --release --example socket_probe -- SOCKET CREDENTIAL SECONDS [LABEL]
//! ```
//!
//! Prints one line: `LABEL n=… p50=… p99=… p99.9=… max=…` (microseconds), and
//! exits 1 if any verification is not an allow.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tollgate_protocol::{Client, Verdict, VerifyRequest};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: socket_probe SOCKET CREDENTIAL SECONDS [LABEL]";
    let socket = args.next().context(usage)?;
    let credential = args.next().context(usage)?;
    let secs: f64 = args.next().context(usage)?.parse().context("SECONDS")?;
    let label = args.next().unwrap_or_else(|| "probe".to_owned());
    let mut client = Client::connect(&socket).with_context(|| format!("cannot connect to {socket}"))?;
    client.set_timeout(Some(Duration::from_secs(10)))?;
    let req = VerifyRequest::new(credential.as_bytes());
    // Warm up the connection and the key's cache lines.
    for _ in 0..100 {
        client.verify(&req)?;
    }
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    let (start, length) = (Instant::now(), Duration::from_secs_f64(secs));
    let mut denied = 0u64;
    while start.elapsed() < length {
        let t = Instant::now();
        let v = client.verify(&req)?;
        lat.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
        if !matches!(v, Verdict::Allow(_)) {
            denied += 1;
        }
    }
    lat.sort_unstable();
    let q = |p: f64| f64::from(lat[((lat.len() - 1) as f64 * p).round() as usize]) / 1000.0;
    println!(
        "{label} n={} p50={:.0} p99={:.0} p99.9={:.0} max={:.0} denied={denied}",
        lat.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    if denied > 0 {
        anyhow::bail!("{denied} verifications were not allowed");
    }
    Ok(())
}
