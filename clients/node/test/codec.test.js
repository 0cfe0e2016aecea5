'use strict';
// The codec against SPEC.md's worked examples (read from the file itself) and
// its limits and malformed cases.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const codec = require('../src/codec');

const spec = fs.readFileSync(path.join(__dirname, '../../../protocol/SPEC.md'), 'utf8');

/** The bytes of the first code block after `heading` in SPEC.md. */
function example(heading) {
  const at = spec.indexOf(heading);
  assert.ok(at >= 0, `SPEC.md has no ${heading}`);
  const block = spec.slice(at).split('```')[1];
  const hex = block
    .split('\n')
    .map((l) => l.trim().split(/\s{2,}/)[0])
    .filter((l) => /^([0-9a-f]{2} ?)+$/.test(l))
    .join(' ');
  return Buffer.from(hex.replace(/ /g, ''), 'hex');
}

test('6.1 verify request, byte for byte', () => {
  const f = codec.encodeVerify(42, { credential: 'tg_abc', ip: '10.0.0.7', permissions: { docs: ['read'] }, cost: 1, quota: ['docs', 1] });
  assert.equal(f.length, 51);
  assert.deepEqual(f, example('### 6.1'));
  // The same IP as IPv4-mapped IPv6 goes as IPv4.
  assert.deepEqual(codec.encodeVerify(42, { credential: 'tg_abc', ip: '::ffff:10.0.0.7', permissions: [['docs', 'read']], quota: { name: 'docs', amount: 1 } }), f);
});

test('6.2 allow verdict', () => {
  const { id, message } = codec.decodeResponse(example('### 6.2'));
  assert.equal(id, 42);
  assert.deepEqual(message, {
    allowed: true,
    kind: 'api_key',
    subject: 'u1',
    teamId: 't1',
    credentialId: 'k1',
    roles: ['admin'],
    permissions: { docs: ['read', 'write'] },
    remainingUses: null,
    rateLimit: { limit: 100, remaining: 99, resetMs: 60000 },
  });
});

test('6.3 deny verdict', () => {
  const { message } = codec.decodeResponse(example('### 6.3'));
  assert.deepEqual(message, {
    allowed: false,
    code: 'RATE_LIMITED',
    retryAfterMs: 1500,
    reason: 'slow down',
    rateLimit: { limit: 100, remaining: 0, resetMs: 1500 },
  });
});

test('6.4 ping, pong, error', () => {
  assert.deepEqual(codec.encodePing(1), Buffer.from('000000050400000001', 'hex'));
  assert.deepEqual(codec.decodeResponse(Buffer.from('000000058400000001', 'hex')), { id: 1, type: 0x84, message: {} });
  const e = codec.decodeResponse(Buffer.from('00000012ff00000000000300097' + '46f6f206c61726765', 'hex'));
  assert.deepEqual(e.message, { code: 3, codeName: 'FRAME_TOO_LARGE', message: 'too large' });
});

test('limits are refused before anything is sent', () => {
  assert.throws(() => codec.encodeVerify(1, { credential: 'x'.repeat(8193) }), codec.FieldTooLong);
  codec.encodeVerify(1, { credential: 'x'.repeat(8192) });
  assert.throws(() => codec.encodeVerify(1, { credential: 'k', permissions: [['r'.repeat(1025), 'a']] }), codec.FieldTooLong);
  const many = Array.from({ length: 257 }, (_, i) => [`r${i}`, 'a']);
  assert.throws(() => codec.encodeVerify(1, { credential: 'k', permissions: many }), codec.FieldTooLong);
  assert.throws(() => codec.encodeVerify(0, { credential: 'k' }), RangeError);
  assert.throws(() => codec.encodeVerify(1, { credential: 'k', ip: 'not-an-ip' }), TypeError);
  assert.throws(() => codec.encodeVerify(1, { credential: 'k', cost: -1 }), RangeError);
});

test('malformed answers are protocol errors', () => {
  const allow = example('### 6.2');
  const bad = (buf) => assert.throws(() => codec.decodeResponse(buf), codec.ProtocolError);
  bad(Buffer.concat([allow, Buffer.from([0])])); // length field no longer matches
  const trailing = Buffer.concat([allow, Buffer.from([0])]);
  trailing.writeUInt32BE(allow.length - 3, 0);
  bad(trailing); // a byte after the last field
  const outcome = Buffer.from(allow);
  outcome[9] = 3;
  bad(outcome);
  const kind = Buffer.from(allow);
  kind[10] = 4;
  bad(kind);
  const utf8 = Buffer.from(allow);
  utf8[13] = 0xff; // inside "u1"
  bad(utf8);
  const truncated = allow.subarray(0, 20);
  truncated.writeUInt32BE(16, 0);
  bad(Buffer.from(truncated));
  bad(Buffer.from('000000050100000001', 'hex')); // a request type
  const fb = new codec.FrameBuffer();
  fb.push(Buffer.from('00010001', 'hex'));
  assert.throws(() => fb.next(), codec.ProtocolError); // over 65536, before the body
});

test('FrameBuffer splits a stream at any boundary', () => {
  const stream = Buffer.concat([example('### 6.2'), example('### 6.3'), Buffer.from('000000058400000001', 'hex')]);
  for (let cut = 1; cut < stream.length; cut += 7) {
    const fb = new codec.FrameBuffer();
    const ids = [];
    for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
      fb.push(part);
      for (let f = fb.next(); f; f = fb.next()) ids.push(codec.decodeResponse(f).id);
    }
    assert.deepEqual(ids, [42, 42, 1]);
    assert.equal(fb.pending, 0);
  }
});
