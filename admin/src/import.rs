//! `tollgate-admin keys import FILE.jsonl`: API keys from a file of JSON
//! lines, one entry of `POST /v1/keys/import` a line, sent in batches.
//!
//! The whole file is checked before anything is sent (a bad line is named by
//! its number); the batches then go one after the other, each one atomic on
//! the daemon. What each committed batch made (ids, and the secrets tollgate
//! generated) is written out, in the order of the lines, before the next
//! batch is sent, so a failure part-way leaves an exact record: the error says
//! which lines were imported and which were not.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{AdminClient, ClientError};
use crate::error::{CliError, EXIT_USAGE};
use crate::types::{ImportKey, ImportedKey, KeyImport, MAX_IMPORT_BODY_BYTES, MAX_IMPORT_KEYS};

/// What one import run is given.
pub(crate) struct ImportRun<'a> {
    pub file: &'a Path,
    /// Entries per request, at most [`MAX_IMPORT_KEYS`].
    pub batch: usize,
    /// Where the imported keys go (created 0600); stdout when `None`.
    pub out: Option<&'a Path>,
    pub json: bool,
}

/// A body's bytes besides its entries: `{"keys":[` and `]}`.
const BODY_OVERHEAD: usize = 16;

/// One line written for an imported key: its line in the input, then the key.
#[derive(Serialize)]
struct OutLine<'a> {
    line: usize,
    #[serde(flatten)]
    key: &'a ImportedKey,
}

/// Reads `file` line by line: `(line number, entry)` for each line that is
/// not blank, or the first line that is not an entry.
fn entries(file: &Path) -> Result<impl Iterator<Item = Result<(usize, ImportKey), CliError>>, CliError> {
    let f = File::open(file).map_err(|e| CliError::usage(format!("{}: cannot read it: {e}", file.display())))?;
    let name = file.display().to_string();
    Ok(BufReader::new(f).lines().enumerate().filter_map(move |(i, line)| {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => return Some(Err(CliError::usage(format!("{name}:{n}: cannot read the line: {e}")))),
        };
        if line.trim().is_empty() {
            return None;
        }
        Some(parse_line(&line).map(|e| (n, e)).map_err(|m| CliError::usage(format!("{name}:{n}: {m}"))))
    }))
}

/// One line as an entry, with the checks that need no daemon.
fn parse_line(line: &str) -> Result<ImportKey, String> {
    // serde would take a struct from an array too.
    if !line.trim_start().starts_with('{') {
        return Err("not an import entry: expected a JSON object".to_owned());
    }
    let e: ImportKey = serde_json::from_str(line).map_err(|e| format!("not an import entry: {e}"))?;
    if let Some(h) = &e.hash
        && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err("hash: must be 64 hexadecimal digits (the SHA-256 of the secret)".to_owned());
    }
    if e.start.is_some() && e.hash.is_none() {
        return Err("start: only with hash (a generated key's start is tollgate's)".to_owned());
    }
    if e.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err("metadata: must be a JSON object".to_owned());
    }
    Ok(e)
}

/// Progress on stderr: one line redrawn in place on a terminal, else a line
/// every few seconds (and at the end).
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    last: Option<Instant>,
    tty: bool,
    json: bool,
}

impl Progress {
    fn rate(&self) -> u64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 { (self.done as f64 / secs) as u64 } else { 0 }
    }

    fn update(&mut self, done: usize) {
        self.done = done;
        let finished = done == self.total;
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(5) };
        if !finished && self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let line = if self.json {
            serde_json::json!({"imported": done, "total": self.total, "keysPerSecond": self.rate()}).to_string()
        } else {
            let width = 30;
            let filled = pct * width / 100;
            let bar = if self.tty {
                format!("[{}{}] ", "#".repeat(filled), " ".repeat(width - filled))
            } else {
                String::new()
            };
            format!("import: {bar}{done}/{} keys ({pct}%), {} keys/s", self.total, self.rate())
        };
        let mut err = std::io::stderr().lock();
        let _ = if self.tty && !self.json {
            write!(err, "\r{line}{}", if finished { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

/// Checks the file, then imports it batch by batch; returns the number of
/// keys imported and how many of them got a generated secret.
pub(crate) fn import(client: &AdminClient, run: &ImportRun<'_>) -> Result<(usize, usize), CliError> {
    let batch_max = run.batch.clamp(1, MAX_IMPORT_KEYS);
    // Pass 1: every line is an entry, and fits in a request.
    let mut total = 0usize;
    for item in entries(run.file)? {
        let (n, e) = item?;
        let size = serde_json::to_vec(&e).map_or(0, |v| v.len());
        if size + BODY_OVERHEAD > MAX_IMPORT_BODY_BYTES {
            return Err(CliError::usage(format!(
                "{}:{n}: the entry is larger than a request may be ({MAX_IMPORT_BODY_BYTES} bytes)",
                run.file.display()
            )));
        }
        total += 1;
    }
    if total == 0 {
        return Err(CliError::usage(format!("{}: no entries (one JSON object a line)", run.file.display())));
    }
    let mut sink: Box<dyn Write> = match run.out {
        Some(path) => Box::new(std::io::BufWriter::new(create_private(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let out_name = run.out.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let mut progress = Progress {
        total,
        done: 0,
        started: Instant::now(),
        last: None,
        tty: std::io::stderr().is_terminal(),
        json: run.json,
    };
    // Pass 2: batches of up to `batch_max` entries and the body limit.
    let mut b = Batches {
        client,
        file: run.file,
        sink: &mut *sink,
        out_name: &out_name,
        progress: &mut progress,
        lines: Vec::with_capacity(batch_max),
        keys: Vec::with_capacity(batch_max),
        bytes: BODY_OVERHEAD,
        sent: 0,
        done: 0,
        generated: 0,
    };
    for item in entries(run.file)? {
        let (n, e) = item?;
        let size = serde_json::to_vec(&e).map_or(0, |v| v.len()) + 1;
        if b.keys.len() == batch_max || b.bytes + size > MAX_IMPORT_BODY_BYTES {
            b.send()?;
        }
        b.bytes += size;
        b.lines.push(n);
        b.keys.push(e);
    }
    b.send()?;
    Ok((b.done, b.generated))
}

/// The batch being filled, and what was sent before it.
struct Batches<'a> {
    client: &'a AdminClient,
    file: &'a Path,
    sink: &'a mut dyn Write,
    out_name: &'a str,
    progress: &'a mut Progress,
    /// The line of each entry of the batch.
    lines: Vec<usize>,
    keys: Vec<ImportKey>,
    /// The body's size so far.
    bytes: usize,
    /// Batches sent.
    sent: usize,
    /// Keys imported, and how many of them got a generated secret.
    done: usize,
    generated: usize,
}

impl Batches<'_> {
    /// Sends the batch (if it holds anything) and writes what it made.
    fn send(&mut self) -> Result<(), CliError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        self.sent += 1;
        let (first, last) = (self.lines[0], self.lines[self.lines.len() - 1]);
        let batch = KeyImport { keys: std::mem::take(&mut self.keys) };
        let answer = self.client.import_keys(&batch).map_err(|e| {
            let f =
                Failed { file: self.file, batch: self.sent, lines: &self.lines, done: self.done, out: self.out_name };
            failed(e, &f)
        })?;
        let sink = &mut *self.sink;
        let written = answer.keys.iter().zip(&self.lines).try_for_each(|(k, &line)| {
            serde_json::to_writer(&mut *sink, &OutLine { line, key: k }).map_err(std::io::Error::from)?;
            sink.write_all(b"\n")
        });
        if let Err(e) = written.and_then(|()| sink.flush()) {
            let lost: Vec<&str> = answer.keys.iter().filter(|k| k.key.is_some()).map(|k| k.id.as_str()).collect();
            return Err(CliError::new(
                EXIT_USAGE,
                "output",
                format!(
                    "batch {} (lines {first}-{last}) was imported, but its keys could not be written to {}: {e}; \
                     the secrets generated for {} of its keys are lost (delete them: {}); lines after {last} were \
                     not sent",
                    self.sent,
                    self.out_name,
                    lost.len(),
                    lost.join(" "),
                ),
            ));
        }
        self.done += answer.keys.len();
        self.generated += answer.keys.iter().filter(|k| k.key.is_some()).count();
        self.lines.clear();
        self.bytes = BODY_OVERHEAD;
        self.progress.update(self.done);
        Ok(())
    }
}

/// Creates `path` for secrets: readable by its owner only (0600), and never
/// over an existing file.
fn create_private(path: &Path) -> Result<File, CliError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).map_err(|e| CliError::usage(format!("--out {}: cannot create it: {e}", path.display())))
}

/// Where an import stopped.
struct Failed<'a> {
    file: &'a Path,
    batch: usize,
    /// The line of each entry of the failed batch.
    lines: &'a [usize],
    /// Keys imported before it (all the lines before its first).
    done: usize,
    out: &'a str,
}

/// A batch's failure, said with line numbers: which entry the daemon refused
/// (`keys[3]` of the batch is line N of the file), what was imported before,
/// and what was not.
fn failed(e: ClientError, f: &Failed<'_>) -> CliError {
    let answered = matches!(e, ClientError::Status { .. });
    let mut err = CliError::from(e);
    let (first, last) = (f.lines[0], f.lines[f.lines.len() - 1]);
    let line_of = |i: usize| f.lines.get(i).copied();
    let before = if f.done == 0 {
        "nothing was imported before it".to_owned()
    } else {
        format!("lines up to {} were imported ({} keys, written to {})", first - 1, f.done, f.out)
    };
    let outcome = if answered {
        format!("batch {} (lines {first}-{last}) was refused and nothing of it imported", f.batch)
    } else {
        format!(
            "batch {} (lines {first}-{last}) got no answer: it may or may not have been imported (check with `keys list`)",
            f.batch
        )
    };
    let name = f.file.display();
    if let Some(http) = err.http.as_mut() {
        // `keys[3]` in the daemon's message, and ["body", "keys", "3", ...] in its locations.
        let mut message = http.message.clone();
        if let Some(rest) = message.strip_prefix("keys[")
            && let Some((i, tail)) = rest.split_once(']')
            && let Some(line) = i.parse().ok().and_then(line_of)
        {
            message = format!("{name}:{line}{tail}");
        }
        for field in &mut http.fields {
            let loc: Vec<&str> = field.field.split('.').collect();
            if let ["body", "keys", i, ..] = loc.as_slice()
                && let Some(line) = i.parse().ok().and_then(line_of)
            {
                field.flag = Some(format!("{name}:{line}"));
            }
        }
        http.message = format!("{message}; {outcome}; {before}; lines from {first} on were not imported");
        err.message = format!("HTTP {}: {}: {}", http.status, err.kind, http.message);
    } else {
        err.message = format!("{}; {outcome}; {before}; lines after {last} were not sent", err.message);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_before_anything_is_sent() {
        assert!(parse_line(r#"{"userId": "u", "name": "n"}"#).is_ok());
        let hash = "ab".repeat(32);
        assert!(parse_line(&format!(r#"{{"hash": "{hash}", "start": "sk_live_1"}}"#)).is_ok());
        for (line, why) in [
            (r#"{"userId": 3}"#, "not an import entry"),
            (r#"{"user": "u"}"#, "unknown field"),
            (r#"{"hash": "abc"}"#, "hash: must be 64"),
            (r#"{"start": "sk_"}"#, "start: only with hash"),
            (r#"{"metadata": []}"#, "metadata"),
            (r#"{"remaining": 4294967296}"#, "not an import entry"),
            ("[1]", "not an import entry"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn a_refused_entry_is_named_by_its_line() {
        use crate::types::{ApiError, ErrorBody, ValidationDetail};
        let body = ErrorBody {
            detail: Some(vec![ValidationDetail {
                loc: vec!["body".into(), "keys".into(), "1".into(), "expiresIn".into()],
                msg: "must be at least 1 second".into(),
                kind: "value_error".into(),
            }]),
            error: Some(ApiError {
                code: "validation_failed".into(),
                message: "keys[1].expiresIn: must be at least 1 second".into(),
            }),
        };
        let f = Failed { file: Path::new("keys.jsonl"), batch: 2, lines: &[11, 13, 14], done: 8, out: "stdout" };
        let e = failed(ClientError::Status { status: 422, body, retry_after: None }, &f);
        assert_eq!(e.code, 8);
        assert_eq!(
            e.message,
            "HTTP 422: validation_failed: keys.jsonl:13.expiresIn: must be at least 1 second; batch 2 (lines 11-14) \
             was refused and nothing of it imported; lines up to 10 were imported (8 keys, written to stdout); \
             lines from 11 on were not imported"
        );
        assert_eq!(e.fields()[0].flag.as_deref(), Some("keys.jsonl:13"));
        let e = failed(ClientError::Timeout("no answer".into()), &Failed { done: 0, ..f });
        assert_eq!(e.code, 3);
        assert!(e.message.contains("may or may not have been imported") && e.message.contains("nothing was imported"));
    }
}
