'use strict';
// The wire format of tollgate's socket protocol, version 1 (protocol/SPEC.md).
// No I/O here: bytes in, messages out, and the reverse.

const MAGIC = Buffer.from('TGAT', 'ascii');
const PROTOCOL_VERSION = 1;
const HELLO = Buffer.concat([MAGIC, Buffer.from([0x00, PROTOCOL_VERSION])]);

const MAX_FRAME_LEN = 65536;
const MAX_CREDENTIAL_LEN = 8192;
const MAX_STRING_LEN = 1024;
const MAX_LIST_LEN = 256;

const MessageType = Object.freeze({
  VERIFY: 0x01,
  QUOTA_CONSUME: 0x02,
  QUOTA_RELEASE: 0x03,
  PING: 0x04,
  VERDICT: 0x81,
  QUOTA_RESULT: 0x82,
  PONG: 0x84,
  ERROR: 0xff,
});

/** Credential kinds of an allow verdict, by wire value. */
const KIND_NAMES = Object.freeze({ 1: 'api_key', 2: 'access_token', 3: 'jwt' });

/** Deny codes, by wire value (SPEC.md section 5.2). */
const DENY_CODES = Object.freeze({
  1: 'MALFORMED',
  2: 'NOT_FOUND',
  3: 'BAD_SIGNATURE',
  4: 'EXPIRED',
  5: 'NOT_YET_VALID',
  6: 'REVOKED',
  7: 'DISABLED',
  8: 'IP_NOT_ALLOWED',
  9: 'INSUFFICIENT_PERMISSIONS',
  10: 'RATE_LIMITED',
  11: 'USAGE_EXCEEDED',
  12: 'TEAM_RATE_LIMITED',
  13: 'QUOTA_EXCEEDED',
});

/** Error frame codes, by wire value (SPEC.md section 5.6). */
const ERROR_CODES = Object.freeze({
  1: 'MALFORMED_FRAME',
  2: 'UNSUPPORTED_VERSION',
  3: 'FRAME_TOO_LARGE',
  4: 'UNKNOWN_MESSAGE_TYPE',
  5: 'SERVER_BUSY',
  6: 'INTERNAL',
});

/** The daemon's bytes break the protocol. */
class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** A request field over its limit (SPEC.md section 2); nothing was sent. */
class FieldTooLong extends RangeError {
  constructor(message) {
    super(message);
    this.name = 'FieldTooLong';
  }
}

// ------------------------------------------------------------------ encoding

/** Collects the bytes of one payload. */
class Writer {
  constructor() {
    this.parts = [];
    this.len = 0;
  }
  push(buf) {
    this.parts.push(buf);
    this.len += buf.length;
  }
  u8(v) {
    this.push(Buffer.from([v]));
  }
  u16(v) {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(v);
    this.push(b);
  }
  u32(v) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`not a u32: ${v}`);
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v);
    this.push(b);
  }
  bytes16(buf, max, what) {
    if (buf.length > max) throw new FieldTooLong(`${what} is ${buf.length} bytes, over ${max}`);
    this.u16(buf.length);
    this.push(buf);
  }
  str16(s, what) {
    if (typeof s !== 'string') throw new TypeError(`${what} must be a string`);
    this.bytes16(Buffer.from(s, 'utf8'), MAX_STRING_LEN, what);
  }
  count(n, what) {
    if (n > MAX_LIST_LEN) throw new FieldTooLong(`${what} has ${n} items, over ${MAX_LIST_LEN}`);
    this.u16(n);
  }
}

/** `[[resource, action], ...]` from that form or from `{resource: [actions]}`. */
function permissionPairs(permissions) {
  if (permissions == null) return [];
  if (Array.isArray(permissions)) return permissions;
  const pairs = [];
  for (const [resource, actions] of Object.entries(permissions)) {
    for (const action of actions) pairs.push([resource, action]);
  }
  return pairs;
}

/** The 4 or 16 bytes of an IP address string; IPv4-mapped IPv6 as IPv4. */
function ipBytes(ip) {
  const v4 = (s) => {
    const parts = s.split('.');
    if (parts.length !== 4) return null;
    const out = [];
    for (const p of parts) {
      if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
      out.push(Number(p));
    }
    return Buffer.from(out);
  };
  const four = v4(ip);
  if (four) return four;
  let s = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (!s.includes(':')) throw new TypeError(`not an IP address: ${ip}`);
  // An embedded IPv4 tail counts as two groups.
  let tail = [];
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const t = v4(s.slice(lastColon + 1));
    if (!t) throw new TypeError(`not an IP address: ${ip}`);
    tail = [(t[0] << 8) | t[1], (t[2] << 8) | t[3]];
    // Keep a `::` before the tail; drop a single `:`.
    s = s.slice(0, lastColon + 1);
    if (!s.endsWith('::')) s = s.slice(0, -1);
  }
  const halves = s.split('::');
  if (halves.length > 2) throw new TypeError(`not an IP address: ${ip}`);
  const groups = (h) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  const want = 8 - tail.length;
  const missing = want - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) throw new TypeError(`not an IP address: ${ip}`);
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  const words = all.map((g) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new TypeError(`not an IP address: ${ip}`);
    return parseInt(g, 16);
  });
  words.push(...tail);
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  // ::ffff:a.b.c.d goes as IPv4 (SPEC.md section 5.1).
  if (out.subarray(0, 10).every((b) => b === 0) && out[10] === 0xff && out[11] === 0xff) {
    return out.subarray(12);
  }
  return out;
}

/**
 * The payload of a Verify request. `req` is `{credential, ip?, permissions?,
 * cost?, quota?}`; see index.d.ts.
 */
function verifyPayload(req) {
  const w = new Writer();
  const cred = Buffer.isBuffer(req.credential) ? req.credential : Buffer.from(String(req.credential ?? ''), 'utf8');
  w.bytes16(cred, MAX_CREDENTIAL_LEN, 'credential');
  if (req.ip == null || req.ip === '') {
    w.u8(0x00);
  } else {
    const b = Buffer.isBuffer(req.ip) ? req.ip : ipBytes(String(req.ip));
    if (b.length !== 4 && b.length !== 16) throw new TypeError('ip must be 4 or 16 bytes');
    w.u8(b.length === 4 ? 0x04 : 0x06);
    w.push(b);
  }
  const pairs = permissionPairs(req.permissions);
  w.count(pairs.length, 'permissions');
  for (const [resource, action] of pairs) {
    w.str16(resource, 'permission resource');
    w.str16(action, 'permission action');
  }
  w.u32(req.cost ?? 1);
  if (req.quota == null) {
    w.u8(0x00);
  } else {
    const [name, amount] = Array.isArray(req.quota) ? req.quota : [req.quota.name, req.quota.amount ?? 1];
    w.u8(0x01);
    w.str16(name, 'quota name');
    w.u32(amount);
  }
  return w;
}

function quotaPayload(teamId, quota, amount) {
  const w = new Writer();
  w.str16(teamId, 'team id');
  w.str16(quota, 'quota name');
  w.u32(amount);
  return w;
}

/** One whole frame: length, type, id, payload (a Writer or nothing). */
function frame(type, id, payload) {
  if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) throw new RangeError(`request id must be 1..2^32-1: ${id}`);
  const len = 5 + (payload ? payload.len : 0);
  if (len > MAX_FRAME_LEN) throw new FieldTooLong(`frame of ${len} bytes, over ${MAX_FRAME_LEN}`);
  const head = Buffer.allocUnsafe(9);
  head.writeUInt32BE(len, 0);
  head.writeUInt8(type, 4);
  head.writeUInt32BE(id, 5);
  return payload ? Buffer.concat([head, ...payload.parts], 4 + len) : head;
}

const encodeVerify = (id, req) => frame(MessageType.VERIFY, id, verifyPayload(req));
const encodeQuotaConsume = (id, teamId, quota, amount) =>
  frame(MessageType.QUOTA_CONSUME, id, quotaPayload(teamId, quota, amount));
const encodeQuotaRelease = (id, teamId, quota, amount) =>
  frame(MessageType.QUOTA_RELEASE, id, quotaPayload(teamId, quota, amount));
const encodePing = (id) => frame(MessageType.PING, id, null);

// ------------------------------------------------------------------ decoding

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Reads one payload; every read checks the bytes are there. */
class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.buf.length) throw new ProtocolError('payload ends inside a field');
  }
  u8() {
    this.need(1);
    return this.buf[this.pos++];
  }
  u16() {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32() {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64() {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    // Counters and milliseconds: exact as a Number up to 2^53.
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  bool() {
    const b = this.u8();
    if (b > 1) throw new ProtocolError(`bad bool ${b}`);
    return b === 1;
  }
  opt(read) {
    return this.bool() ? read() : null;
  }
  str() {
    const n = this.u16();
    if (n > MAX_STRING_LEN) throw new ProtocolError(`string of ${n} bytes, over ${MAX_STRING_LEN}`);
    this.need(n);
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return UTF8.decode(s);
    } catch {
      throw new ProtocolError('string is not UTF-8');
    }
  }
  list(read) {
    const n = this.u16();
    if (n > MAX_LIST_LEN) throw new ProtocolError(`list of ${n} items, over ${MAX_LIST_LEN}`);
    const out = [];
    for (let i = 0; i < n; i++) out.push(read());
    return out;
  }
  end() {
    if (this.pos !== this.buf.length) throw new ProtocolError(`${this.buf.length - this.pos} bytes after the last field`);
  }
}

function rateLimit(r) {
  return r.opt(() => ({ limit: r.u32(), remaining: r.u32(), resetMs: r.u64() }));
}

function decodeVerdict(r) {
  const outcome = r.u8();
  if (outcome === 0x01) {
    const k = r.u8();
    const kind = KIND_NAMES[k];
    if (!kind) throw new ProtocolError(`bad credential kind ${k}`);
    return {
      allowed: true,
      kind,
      subject: r.str(),
      teamId: r.str(),
      credentialId: r.str(),
      roles: r.list(() => r.str()),
      permissions: Object.fromEntries(r.list(() => [r.str(), r.list(() => r.str())])),
      remainingUses: r.opt(() => r.u64()),
      rateLimit: rateLimit(r),
    };
  }
  if (outcome === 0x02) {
    const c = r.u8();
    const code = DENY_CODES[c];
    if (!code) throw new ProtocolError(`bad deny code ${c}`);
    return { allowed: false, code, retryAfterMs: r.opt(() => r.u64()), reason: r.str(), rateLimit: rateLimit(r) };
  }
  throw new ProtocolError(`bad verdict outcome ${outcome}`);
}

/**
 * Decodes one whole frame (length field included) from the server:
 * `{id, type, message}`, where message is a verdict, a quota result, `{}`
 * for a pong, or `{code, codeName, message}` for an Error frame.
 */
function decodeResponse(buf) {
  if (buf.length < 9) throw new ProtocolError('frame shorter than its header');
  const len = buf.readUInt32BE(0);
  if (len < 5 || len > MAX_FRAME_LEN || buf.length !== 4 + len) throw new ProtocolError(`bad frame length ${len}`);
  const type = buf[4];
  const id = buf.readUInt32BE(5);
  const r = new Reader(buf.subarray(9));
  let message;
  switch (type) {
    case MessageType.VERDICT:
      message = decodeVerdict(r);
      break;
    case MessageType.QUOTA_RESULT:
      message = { ok: r.bool(), used: r.u64(), limit: r.opt(() => r.u64()) };
      break;
    case MessageType.PONG:
      message = {};
      break;
    case MessageType.ERROR: {
      const code = r.u16();
      const codeName = ERROR_CODES[code];
      if (!codeName) throw new ProtocolError(`bad error code ${code}`);
      message = { code, codeName, message: r.str() };
      break;
    }
    default:
      throw new ProtocolError(`not a response type: 0x${type.toString(16)}`);
  }
  r.end();
  return { id, type, message };
}

/**
 * Splits a byte stream into frames. `push(chunk)` then `next()` until it
 * returns null; a length field out of range throws before the body is read.
 */
class FrameBuffer {
  constructor() {
    this.buf = Buffer.alloc(0);
  }
  push(chunk) {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }
  get pending() {
    return this.buf.length;
  }
  /** The next whole frame's bytes, or null. */
  next() {
    if (this.buf.length < 4) return null;
    const len = this.buf.readUInt32BE(0);
    if (len < 5 || len > MAX_FRAME_LEN) throw new ProtocolError(`bad frame length ${len}`);
    if (this.buf.length < 4 + len) return null;
    const f = this.buf.subarray(0, 4 + len);
    this.buf = this.buf.subarray(4 + len);
    return f;
  }
}

module.exports = {
  PROTOCOL_VERSION,
  HELLO,
  MAGIC,
  MAX_FRAME_LEN,
  MAX_CREDENTIAL_LEN,
  MAX_STRING_LEN,
  MAX_LIST_LEN,
  MessageType,
  KIND_NAMES,
  DENY_CODES,
  ERROR_CODES,
  ProtocolError,
  FieldTooLong,
  ipBytes,
  encodeVerify,
  encodeQuotaConsume,
  encodeQuotaRelease,
  encodePing,
  decodeResponse,
  FrameBuffer,
};
