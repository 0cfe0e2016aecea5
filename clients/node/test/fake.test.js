'use strict';
// The client against scripted servers on a Unix socket in this process:
// timeouts, reconnection with backoff, answers out of order, Error frames.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const os = require('node:os');
const fs = require('node:fs');
const path = require('node:path');
const { Client, TimeoutError, ConnectionClosed, ErrorFrame, HandshakeRejected } = require('..');
const codec = require('../src/codec');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-node-'));
let n = 0;

/** A server; `onFrame(socket, {type, id}, connIndex)` scripts the answers. */
function server(onFrame, onConnect = () => true) {
  const sock = path.join(dir, `s${n++}.sock`);
  let conns = 0;
  const srv = net.createServer((s) => {
    const index = conns++;
    if (!onConnect(s, index)) return;
    let buf = Buffer.alloc(0);
    let hello = false;
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!hello) {
        if (buf.length < 6) return;
        hello = true;
        buf = buf.subarray(6);
        s.write(codec.HELLO);
      }
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const f = buf.subarray(0, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(f.length);
        onFrame(s, { type: f[4], id: f.readUInt32BE(5) }, index);
      }
    });
    s.on('error', () => {});
  });
  srv.listen(sock);
  return { sock, srv, connections: () => conns };
}

const pong = (id) => {
  const b = Buffer.from('000000058400000000', 'hex');
  b.writeUInt32BE(id, 5);
  return b;
};
const errorFrame = (id, code, msg) => {
  const m = Buffer.from(msg);
  const b = Buffer.alloc(4 + 5 + 2 + 2 + m.length);
  b.writeUInt32BE(5 + 4 + m.length, 0);
  b[4] = 0xff;
  b.writeUInt32BE(id, 5);
  b.writeUInt16BE(code, 9);
  b.writeUInt16BE(m.length, 11);
  m.copy(b, 13);
  return b;
};

test('answers out of order are matched by id', async () => {
  const held = [];
  const { sock, srv } = server((s, f) => {
    held.push(f.id);
    if (held.length === 3) for (const id of held.reverse()) s.write(pong(id));
  });
  const c = new Client(sock);
  await Promise.all([c.ping(), c.ping(), c.ping()]);
  await c.close();
  srv.close();
});

test('a request times out and its late answer is dropped', async () => {
  let first = null;
  const { sock, srv } = server((s, f) => {
    if (first === null) {
      first = f.id;
      return; // held back
    }
    s.write(pong(first)); // the late answer, then this one's
    s.write(pong(f.id));
  });
  const c = new Client(sock, { timeoutMs: 50 });
  await assert.rejects(c.ping(), TimeoutError);
  await c.ping({ timeoutMs: 1000 });
  assert.equal(c.inFlight, 0);
  await c.close();
  srv.close();
});

test('reconnects with backoff after the daemon goes away and comes back', async () => {
  const sock = path.join(dir, `gone${n++}.sock`);
  const c = new Client(sock, { timeoutMs: 3000, backoffInitialMs: 10, backoffMaxMs: 80 });
  const delays = [];
  c.on('reconnecting', ({ delayMs }) => delays.push(delayMs));
  const p = c.ping();
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(delays.length >= 3, `retried ${delays.length} times`);
  assert.ok(delays.every((d) => d <= 80), `${delays}`);
  assert.ok(delays[delays.length - 1] >= 40, `backoff grew: ${delays}`);
  const srv = net.createServer((s) => {
    s.once('data', () => s.write(codec.HELLO));
    s.on('data', (d) => {
      if (d.length >= 9 && d[d.length - 5] === 0x04) s.write(pong(d.readUInt32BE(d.length - 4)));
    });
  });
  srv.listen(sock);
  await p;
  await c.close();
  srv.close();
});

test('in-flight requests fail when the connection drops; the next one reconnects', async () => {
  const { sock, srv, connections } = server((s, f, index) => {
    if (index === 0) s.destroy();
    else s.write(pong(f.id));
  });
  const c = new Client(sock, { backoffInitialMs: 5 });
  await assert.rejects(c.ping(), ConnectionClosed);
  await c.ping();
  assert.equal(connections(), 2);
  await c.close();
  srv.close();
});

test('Error frames: per request, and for the whole connection after the answers owed', async () => {
  let seen = 0;
  const { sock, srv } = server((s, f, index) => {
    seen++;
    if (index > 0) return s.write(pong(f.id));
    if (seen === 1) s.write(errorFrame(f.id, 6, 'internal'));
    else if (seen === 2) {
      s.write(errorFrame(0, 5, 'shutting down'));
      s.write(pong(f.id)); // an answer owed, after the error
      s.end();
    }
  });
  const c = new Client(sock, { backoffInitialMs: 5 });
  await assert.rejects(c.ping(), (e) => e instanceof ErrorFrame && e.codeName === 'INTERNAL' && e.requestId > 0);
  await c.ping(); // answered after the connection-level error
  await c.ping(); // on a new connection
  await c.close();
  srv.close();
});

test('a SERVER_BUSY refusal is retried until the daemon takes the connection', async () => {
  const reasons = [];
  const { sock, srv } = server(
    (s, f) => s.write(pong(f.id)),
    (s, index) => {
      if (index < 2) {
        s.end(errorFrame(0, 5, 'busy'));
        return false;
      }
      return true;
    },
  );
  const c = new Client(sock, { backoffInitialMs: 5 });
  c.on('reconnecting', ({ error }) => reasons.push(error));
  await c.ping();
  assert.equal(reasons.length, 2);
  assert.ok(reasons.every((e) => e instanceof HandshakeRejected && e.codeName === 'SERVER_BUSY'));
  await c.close();
  srv.close();
});
