//! The key image: what the index holds of every API key, written beside the
//! store when the engine shuts down cleanly and read at the next start in
//! place of the store's key, usage and statistics records — when it is still
//! current.
//!
//! *Current* means the store's write generation (`Store::generation`, moved
//! by every batch the store takes) is the one the image recorded: the image
//! is written after the last flush, so an equal generation means the store
//! holds exactly what the image was made from. Any write after it — a
//! counter flush, an admin change, a crash that kept some of them — leaves
//! another generation, and the start reads the store as without an image. A
//! damaged image (checksums) or one of another format is read past the same
//! way: the image is never the truth, only a faster way to the same index.
//!
//! Layout (`keys.img`, 0600): `TGKEYIMG`, a format byte, the generation (16
//! bytes, big-endian: the epoch of the store's opening that wrote it, then
//! its write counter), then sections of `[length: u32 BE][CRC32: u32 BE]
//! [postcard]`: the head ([`Head`]: key count, the owners' ids and the
//! distinct grants, which keys name by number), then the keys in id order,
//! [`CHUNK`] to a section, so that a start decodes the sections on every
//! core, each reading its own.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::index::{Index, KeyEntry};
use crate::core::model::{Millis, RateLimit, Refill, Usage};
use crate::core::perms::Permissions;
use crate::store::StoreError;

/// The image's file name in the data directory.
pub const FILE: &str = "keys.img";
const MAGIC: &[u8; 8] = b"TGKEYIMG";
const FORMAT: u8 = 2;
/// Magic, format, generation.
const HEADER: usize = 8 + 1 + 16;
/// Keys per section.
const CHUNK: usize = 16_384;
/// A section longer than this is damage, not data (a section holds
/// [`CHUNK`] keys of at most a few hundred bytes, or the head).
const MAX_SECTION: u32 = 1 << 30;

/// What every key refers to by number.
#[derive(Serialize, Deserialize)]
struct Head<'a> {
    keys: u64,
    #[serde(borrow)]
    users: Vec<Cow<'a, str>>,
    grants: Vec<Permissions>,
}

/// One key: its id, owner and grant by number, the settings the verifier
/// reads and its counters.
#[derive(Serialize, Deserialize)]
pub struct ImageKey<'a> {
    /// Key id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The owner's place in the head's users.
    pub user: u32,
    /// The grant's place in the head's grants.
    pub grant: u32,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// Expiry.
    pub expires_at: Option<Millis>,
    /// Per-key rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Refill.
    pub refill: Option<Refill>,
    /// Enabled.
    pub enabled: bool,
    /// Has a remaining-use counter.
    pub counted: bool,
    /// The allowlist, as written.
    #[serde(borrow)]
    pub ips: Vec<Cow<'a, str>>,
    /// The counters, as a flush writes them.
    pub usage: Usage,
}

/// The image's path in `data`.
pub fn path(data: &Path) -> PathBuf {
    data.join(FILE)
}

/// Writes the image of `index`'s keys, recording `generation`: to a
/// temporary file, synced, then renamed over the last one. Returns the
/// number of keys written.
pub fn write(
    data: &Path,
    index: &Index,
    generation: u128,
    usage_of: impl Fn(&KeyEntry) -> Usage,
) -> Result<usize, StoreError> {
    let mut keys: Vec<Arc<KeyEntry>> = Vec::with_capacity(index.keys.len());
    index.keys.for_each(|k| keys.push(k.clone()));
    keys.sort_unstable_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    let mut users: HashMap<&str, u32> = HashMap::new();
    let mut grants: HashMap<*const crate::core::perms::PermSet, u32> = HashMap::new();
    let mut head = Head { keys: keys.len() as u64, users: Vec::new(), grants: Vec::new() };
    let mut refs = Vec::with_capacity(keys.len());
    for k in &keys {
        let user = *users.entry(k.user_id()).or_insert_with(|| {
            head.users.push(Cow::Borrowed(k.user_id()));
            (head.users.len() - 1) as u32
        });
        let grant = *grants.entry(Arc::as_ptr(&k.policy.permissions)).or_insert_with(|| {
            head.grants.push(k.policy.permissions.to_permissions());
            (head.grants.len() - 1) as u32
        });
        refs.push((user, grant));
    }
    let final_path = path(data);
    let tmp = data.join(format!("{FILE}.tmp"));
    let io = |what: &str, e: std::io::Error| StoreError::Db(format!("key image: {what} {}: {e}", tmp.display()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("cannot create", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut header = MAGIC.to_vec();
    header.push(FORMAT);
    header.extend_from_slice(&generation.to_be_bytes());
    out.write_all(&header).map_err(|e| io("cannot write", e))?;
    let section = |out: &mut BufWriter<File>, bytes: &[u8]| -> Result<(), StoreError> {
        out.write_all(&(bytes.len() as u32).to_be_bytes())
            .and_then(|()| out.write_all(&crc32fast::hash(bytes).to_be_bytes()))
            .and_then(|()| out.write_all(bytes))
            .map_err(|e| io("cannot write", e))
    };
    section(&mut out, &encode(&head)?)?;
    for (chunk, refs) in keys.chunks(CHUNK).zip(refs.chunks(CHUNK)) {
        let part: Vec<ImageKey<'_>> = chunk
            .iter()
            .zip(refs)
            .map(|(k, &(user, grant))| ImageKey {
                id: Cow::Borrowed(k.id.as_str()),
                user,
                grant,
                hash: k.hash,
                expires_at: k.expires_at(),
                rate_limit: k.policy.rate_limit(),
                refill: k.policy.refill(),
                enabled: k.enabled,
                counted: k.policy.counted(),
                ips: k.ips().iter().map(|n| Cow::Owned(n.to_string())).collect(),
                usage: usage_of(k),
            })
            .collect();
        section(&mut out, &encode(&part)?)?;
    }
    let file = out.into_inner().map_err(|e| io("cannot write", e.into_error()))?;
    file.sync_all().map_err(|e| io("cannot sync", e))?;
    drop(file);
    std::fs::rename(&tmp, &final_path).map_err(|e| io("cannot rename", e))?;
    File::open(data).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync the directory of", e))?;
    Ok(keys.len())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Db(format!("key image: {e}")))
}

/// An image found current: its head read, its sections located.
pub struct Image {
    file: File,
    head: Vec<u8>,
    sections: Vec<(u64, u32, u32)>,
}

/// Why an image was not used (logged at the start).
pub type Unused = String;

/// Opens the image in `data` if it is there, readable and of `generation`.
/// `Ok(None)`: there is none. `Err(why)`: there is one, not to be used.
pub fn open(data: &Path, generation: u128) -> Result<Option<Image>, Unused> {
    let mut file = match File::open(path(data)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let len = file.metadata().map_err(|e| format!("cannot read its size: {e}"))?.len();
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header).map_err(|_| "shorter than its header".to_owned())?;
    if &header[..8] != MAGIC {
        return Err("not a key image".into());
    }
    if header[8] != FORMAT {
        return Err(format!("format {} (this build reads {FORMAT})", header[8]));
    }
    let recorded = u128::from_be_bytes(header[9..HEADER].try_into().unwrap_or_default());
    if recorded != generation {
        return Err(format!("made at store generation {recorded}; the store is at {generation} (written since)"));
    }
    let mut sections = Vec::new();
    let mut at = HEADER as u64;
    while at < len {
        let mut frame = [0u8; 8];
        file.read_exact_at(&mut frame, at).map_err(|_| format!("cut short at byte {at}"))?;
        let size = u32::from_be_bytes(frame[..4].try_into().unwrap_or_default());
        let crc = u32::from_be_bytes(frame[4..].try_into().unwrap_or_default());
        if size > MAX_SECTION || at + 8 + u64::from(size) > len {
            return Err(format!("section at byte {at} runs past the end"));
        }
        sections.push((at + 8, size, crc));
        at += 8 + u64::from(size);
    }
    if sections.is_empty() {
        return Err("no head".into());
    }
    let (offset, size, crc) = sections.remove(0);
    let head = read_section(&file, offset, size, crc)?;
    let image = Image { file, head, sections };
    let keys = image.head()?.keys;
    if keys.div_ceil(CHUNK as u64) != image.sections.len() as u64 {
        return Err(format!("{keys} keys in {} sections", image.sections.len()));
    }
    Ok(Some(image))
}

fn read_section(file: &File, offset: u64, size: u32, crc: u32) -> Result<Vec<u8>, Unused> {
    let mut bytes = vec![0u8; size as usize];
    file.read_exact_at(&mut bytes, offset).map_err(|e| format!("cannot read: {e}"))?;
    if crc32fast::hash(&bytes) != crc {
        return Err(format!("the section at byte {offset} fails its checksum"));
    }
    Ok(bytes)
}

/// The owners and grants keys name by number.
pub struct Refs<'a> {
    /// Owners' ids.
    pub users: Vec<Cow<'a, str>>,
    /// Grants.
    pub grants: Vec<Permissions>,
}

impl Image {
    fn head(&self) -> Result<Head<'_>, Unused> {
        postcard::from_bytes(&self.head).map_err(|e| format!("unreadable head: {e}"))
    }

    /// The owners and grants.
    pub fn refs(&self) -> Result<Refs<'_>, Unused> {
        let h = self.head()?;
        Ok(Refs { users: h.users, grants: h.grants })
    }

    /// Key sections.
    pub fn sections(&self) -> usize {
        self.sections.len()
    }

    /// Reads section `i` and calls `f` with each of its keys, in id order.
    pub fn for_each_in<E: From<StoreError>>(
        &self,
        i: usize,
        mut f: impl FnMut(ImageKey<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let bad = |why: Unused| E::from(StoreError::Db(format!("key image: {why}")));
        let (offset, size, crc) = self.sections[i];
        let bytes = read_section(&self.file, offset, size, crc).map_err(bad)?;
        let keys: Vec<ImageKey<'_>> =
            postcard::from_bytes(&bytes).map_err(|e| bad(format!("unreadable section {i}: {e}")))?;
        for k in keys {
            f(k)?;
        }
        Ok(())
    }
}
