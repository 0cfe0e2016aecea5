'use strict';
// tollgate-client: Node.js client of tollgate's socket protocol (protocol/SPEC.md).

const codec = require('./src/codec');
const errors = require('./src/errors');
const { Client, DEFAULTS } = require('./src/client');
const { tollgate, credentialOf, LIMIT_CODES } = require('./src/middleware');

module.exports = { Client, DEFAULTS, codec, tollgate, credentialOf, LIMIT_CODES, ...errors };
