'use strict';
// A pipelining client of tollgate's socket protocol (protocol/SPEC.md).

const net = require('node:net');
const { EventEmitter } = require('node:events');
const codec = require('./codec');
const { ErrorFrame, HandshakeRejected, ConnectionClosed, TimeoutError, ClientClosed, ProtocolError } = require('./errors');

const DEFAULTS = Object.freeze({
  timeoutMs: 1000,
  connectTimeoutMs: 1000,
  maxInFlight: 1024,
  backoffInitialMs: 20,
  backoffMaxMs: 2000,
});

/** The response type each request type expects. */
const ANSWER = {
  [codec.MessageType.VERIFY]: codec.MessageType.VERDICT,
  [codec.MessageType.QUOTA_CONSUME]: codec.MessageType.QUOTA_RESULT,
  [codec.MessageType.QUOTA_RELEASE]: codec.MessageType.QUOTA_RESULT,
  [codec.MessageType.PING]: codec.MessageType.PONG,
};

/**
 * A FIFO whose shift is O(1) (Array#shift copies: with 100k requests queued
 * that is quadratic). Entries that timed out are left in place, marked done,
 * and skipped when their turn comes.
 */
class Queue {
  constructor() {
    this.items = [];
    this.head = 0;
  }
  get length() {
    return this.items.length - this.head;
  }
  push(x) {
    this.items.push(x);
  }
  shift() {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  drain() {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}

/** One connection: its socket, its requests in flight, its own ids. */
class Connection {
  constructor(socket) {
    this.socket = socket;
    this.frames = new codec.FrameBuffer();
    this.ready = false;
    /** No more requests go out on it (an Error frame said it closes). */
    this.draining = false;
    this.closed = false;
    /** The connection-level Error frame, if one came. */
    this.error = null;
    this.pending = new Map();
    /** Ids whose request timed out: their late answers are dropped. */
    this.abandoned = new Set();
    this.nextId = 1;
  }

  allocateId() {
    for (;;) {
      const id = this.nextId;
      this.nextId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.pending.has(id) && !this.abandoned.has(id)) return id;
    }
  }
}

/**
 * A client of one daemon socket. Requests are pipelined on one connection
 * and matched to answers by id; they wait while the client (re)connects,
 * with exponential backoff between failed attempts. Each request has its
 * own timeout. Requests in flight when the connection drops fail with
 * `ConnectionClosed` and are not resent.
 *
 * Events: 'connect', 'disconnect' (error or undefined), 'reconnecting'
 * ({attempt, delayMs, error}).
 */
class Client extends EventEmitter {
  constructor(path, options = {}) {
    super();
    if (typeof path !== 'string' || path === '') throw new TypeError('path: the daemon socket path');
    this.path = path;
    this.options = { ...DEFAULTS, ...options };
    for (const k of Object.keys(DEFAULTS)) {
      const v = this.options[k];
      if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${k} must be a positive number: ${v}`);
    }
    this.conn = null;
    this.connecting = false;
    this.queue = new Queue();
    this.attempt = 0;
    this.nextAttemptAt = 0;
    this.retryTimer = null;
    this.closed = false;
    this.pumpScheduled = false;
    this.connections = new Set();
  }

  /**
   * Verifies a credential. `request` is the credential (string or Buffer) or
   * `{credential, ip, permissions, cost, quota}`; `options` may add those
   * fields and `timeoutMs`. Resolves to an Allow or a Deny verdict.
   */
  verify(request, options = {}) {
    const req = typeof request === 'string' || Buffer.isBuffer(request) ? { ...options, credential: request } : { ...request, ...options };
    return this.request(codec.MessageType.VERIFY, () => codec.encodeVerify(1, req), req.timeoutMs);
  }

  /** Consumes `amount` of a team quota: `{ok, used, limit}`. */
  consumeQuota(teamId, quota, amount, options = {}) {
    return this.request(codec.MessageType.QUOTA_CONSUME, () => codec.encodeQuotaConsume(1, teamId, quota, amount), options.timeoutMs);
  }

  /** Releases `amount` of a team quota: `{ok, used, limit}`. */
  releaseQuota(teamId, quota, amount, options = {}) {
    return this.request(codec.MessageType.QUOTA_RELEASE, () => codec.encodeQuotaRelease(1, teamId, quota, amount), options.timeoutMs);
  }

  /** Resolves once the daemon answers a Ping. */
  ping(options = {}) {
    return this.request(codec.MessageType.PING, () => codec.encodePing(1), options.timeoutMs).then(() => undefined);
  }

  /**
   * Stops taking requests; requests in flight are still answered (the socket
   * is half-closed and the daemon answers what it read), queued ones fail
   * with `ClientClosed`. Resolves when every connection has closed.
   */
  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const entry of this.queue.drain()) this.settle(entry, new ClientClosed());
    const waits = [];
    for (const conn of this.connections) {
      if (conn.closed) continue;
      waits.push(new Promise((resolve) => conn.socket.once('close', resolve)));
      if (conn.ready) conn.socket.end();
      else conn.socket.destroy();
    }
    return Promise.all(waits).then(() => undefined);
  }

  /** Number of requests sent and not yet answered, and waiting to be sent. */
  get inFlight() {
    let n = 0;
    for (let i = this.queue.head; i < this.queue.items.length; i++) if (!this.queue.items[i].done) n++;
    for (const c of this.connections) n += c.pending.size;
    return n;
  }

  // ---------------------------------------------------------------- internals

  request(type, encode, timeoutMs) {
    if (this.closed) return Promise.reject(new ClientClosed());
    let frame;
    try {
      frame = encode();
    } catch (e) {
      return Promise.reject(e);
    }
    const ms = timeoutMs ?? this.options.timeoutMs;
    return new Promise((resolve, reject) => {
      const entry = { type, frame, resolve, reject, conn: null, id: 0, done: false, timer: null };
      entry.timer = setTimeout(() => this.timeout(entry, ms), ms);
      this.queue.push(entry);
      this.schedulePump();
    });
  }

  settle(entry, error, value) {
    if (entry.done) return;
    entry.done = true;
    clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else entry.resolve(value);
  }

  timeout(entry, ms) {
    if (entry.done) return;
    if (entry.conn) {
      entry.conn.pending.delete(entry.id);
      entry.conn.abandoned.add(entry.id);
    }
    // A queued entry stays queued, done: pump() skips it.
    this.settle(entry, new TimeoutError(ms));
    this.schedulePump();
  }

  /** Sends what the window allows, once per tick: one write for many requests. */
  schedulePump() {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  pump() {
    while (this.queue.length > 0 && this.queue.items[this.queue.head].done) this.queue.shift();
    if (this.closed || this.queue.length === 0) return;
    const conn = this.conn;
    if (!conn || !conn.ready || conn.draining) {
      if (!this.connecting) this.connectSoon();
      return;
    }
    const out = [];
    while (this.queue.length > 0 && conn.pending.size < this.options.maxInFlight) {
      const entry = this.queue.shift();
      if (entry.done) continue;
      entry.id = conn.allocateId();
      entry.conn = conn;
      entry.frame.writeUInt32BE(entry.id, 5);
      conn.pending.set(entry.id, entry);
      out.push(entry.frame);
    }
    if (out.length > 0) conn.socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
  }

  connectSoon() {
    const wait = Math.max(0, this.nextAttemptAt - Date.now());
    this.connecting = true;
    if (wait === 0) {
      this.connectNow();
    } else {
      this.retryTimer = setTimeout(() => this.connectNow(), wait);
      this.retryTimer.unref();
    }
  }

  connectNow() {
    if (this.closed) {
      this.connecting = false;
      return;
    }
    const socket = net.createConnection(this.path);
    socket.setNoDelay?.(true);
    const conn = new Connection(socket);
    this.connections.add(conn);
    let handshake = Buffer.alloc(0);
    const connectTimer = setTimeout(() => socket.destroy(new Error(`no handshake within ${this.options.connectTimeoutMs} ms`)), this.options.connectTimeoutMs);
    let failure = null;

    socket.on('error', (e) => {
      failure = failure ?? e;
    });
    socket.on('connect', () => socket.write(codec.HELLO));
    socket.on('data', (chunk) => {
      if (conn.ready) return this.onData(conn, chunk);
      handshake = Buffer.concat([handshake, chunk]);
      try {
        const rest = this.readHello(handshake);
        if (rest === null) return;
        clearTimeout(connectTimer);
        conn.ready = true;
        this.conn = conn;
        this.connecting = false;
        this.attempt = 0;
        this.nextAttemptAt = 0;
        this.emit('connect');
        if (rest.length > 0) this.onData(conn, rest);
        this.pump();
      } catch (e) {
        failure = e;
        socket.destroy();
      }
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      conn.closed = true;
      this.connections.delete(conn);
      if (this.conn === conn) this.conn = null;
      if (!conn.ready) {
        this.connectFailed(failure ?? new ConnectionClosed('the daemon closed the connection during the handshake'));
        return;
      }
      const cause = conn.error ?? failure ?? undefined;
      for (const entry of conn.pending.values()) {
        this.settle(entry, new ConnectionClosed('the connection closed before the answer', cause));
      }
      conn.pending.clear();
      this.emit('disconnect', cause);
      // The next attempt waits a little: a daemon that just went away is
      // rarely back at once.
      this.nextAttemptAt = Date.now() + this.options.backoffInitialMs;
      this.schedulePump();
    });
  }

  /** The bytes after a complete accepting hello; null while incomplete. */
  readHello(buf) {
    if (buf.length === 0) return null;
    if (buf[0] === 0x00) {
      // An Error frame instead of a hello.
      const fb = new codec.FrameBuffer();
      fb.push(buf);
      const f = fb.next();
      if (!f) return null;
      const { message, type } = codec.decodeResponse(f);
      if (type !== codec.MessageType.ERROR) throw new ProtocolError('the handshake was answered with a non-error frame');
      throw new HandshakeRejected(message.code, message.codeName, message.message);
    }
    if (buf.length < 6) {
      if (!codec.MAGIC.subarray(0, buf.length).equals(buf.subarray(0, Math.min(4, buf.length)))) {
        throw new ProtocolError('the daemon did not answer with a hello');
      }
      return null;
    }
    if (!buf.subarray(0, 4).equals(codec.MAGIC)) throw new ProtocolError('the daemon did not answer with a hello');
    const version = buf.readUInt16BE(4);
    if (version !== codec.PROTOCOL_VERSION) throw new ProtocolError(`the daemon chose protocol version ${version}`);
    return buf.subarray(6);
  }

  connectFailed(error) {
    this.connecting = false;
    if (this.closed) return;
    this.attempt += 1;
    const base = Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** (this.attempt - 1));
    // Full jitter in [base/2, base]: clients that lost the daemon together do
    // not all come back in the same millisecond.
    const delayMs = Math.round(base / 2 + (Math.random() * base) / 2);
    this.nextAttemptAt = Date.now() + delayMs;
    this.emit('reconnecting', { attempt: this.attempt, delayMs, error });
    if (this.queue.length > 0) this.connectSoon();
  }

  onData(conn, chunk) {
    conn.frames.push(chunk);
    try {
      for (let f = conn.frames.next(); f !== null; f = conn.frames.next()) this.onFrame(conn, codec.decodeResponse(f));
    } catch (e) {
      // Bytes that break the protocol: nothing after them can be trusted.
      conn.draining = true;
      conn.socket.destroy(e);
    }
  }

  onFrame(conn, { id, type, message }) {
    if (id === 0) {
      if (type !== codec.MessageType.ERROR) throw new ProtocolError(`a response with id 0 of type 0x${type.toString(16)}`);
      // About the whole connection: the daemon closes it after the answers it
      // still owes, which keep coming (SPEC.md section 5.6).
      conn.draining = true;
      conn.error = new ErrorFrame(0, message.code, message.codeName, message.message);
      if (this.conn === conn) this.conn = null;
      this.schedulePump();
      return;
    }
    const entry = conn.pending.get(id);
    if (!entry) {
      if (conn.abandoned.delete(id)) return;
      throw new ProtocolError(`an answer to request ${id}, which is not in flight`);
    }
    conn.pending.delete(id);
    if (type === codec.MessageType.ERROR) {
      if (message.codeName === 'MALFORMED_FRAME') {
        conn.draining = true;
        if (this.conn === conn) this.conn = null;
      }
      this.settle(entry, new ErrorFrame(id, message.code, message.codeName, message.message));
    } else if (type !== ANSWER[entry.type]) {
      this.settle(entry, new ProtocolError(`request ${id} was answered with type 0x${type.toString(16)}`));
      throw new ProtocolError('mismatched answer');
    } else {
      this.settle(entry, null, message);
    }
    this.schedulePump();
  }
}

module.exports = { Client, DEFAULTS };
