'use strict';

const { ProtocolError, FieldTooLong } = require('./codec');

/** Base of the errors the client raises about the daemon or the connection. */
class TollgateError extends Error {
  constructor(message) {
    super(message);
    this.name = 'TollgateError';
  }
}

/** The daemon answered with an Error frame (SPEC.md section 5.6). */
class ErrorFrame extends TollgateError {
  constructor(requestId, code, codeName, message) {
    super(`${codeName} (${code}) for request ${requestId}: ${message}`);
    this.name = 'ErrorFrame';
    this.requestId = requestId;
    this.code = code;
    this.codeName = codeName;
    this.detail = message;
  }
}

/** An Error frame in answer to the hello: a bad version, or SERVER_BUSY. */
class HandshakeRejected extends ErrorFrame {
  constructor(code, codeName, message) {
    super(0, code, codeName, message);
    this.name = 'HandshakeRejected';
  }
}

/**
 * The connection closed before this request was answered. It may or may not
 * have taken effect (a use or quota consumed): the client does not resend it.
 */
class ConnectionClosed extends TollgateError {
  constructor(message, cause) {
    super(cause ? `${message}: ${cause.message}` : message);
    this.name = 'ConnectionClosed';
    if (cause) this.cause = cause;
  }
}

/** No answer within the request's timeout; a late answer is dropped. */
class TimeoutError extends TollgateError {
  constructor(ms) {
    super(`no answer within ${ms} ms`);
    this.name = 'TimeoutError';
    this.timeoutMs = ms;
  }
}

/** `close()` was called; the request was never sent. */
class ClientClosed extends TollgateError {
  constructor() {
    super('the client is closed');
    this.name = 'ClientClosed';
  }
}

module.exports = {
  TollgateError,
  ErrorFrame,
  HandshakeRejected,
  ConnectionClosed,
  TimeoutError,
  ClientClosed,
  ProtocolError,
  FieldTooLong,
};
