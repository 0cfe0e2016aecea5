'use strict';
// An Express application guarded by tollgate over its Unix socket. Needs
// `npm install express` (the client itself needs nothing but Node).
//
//   TOLLGATE_SOCKET=./tollgate.sock node examples/express.js
//   curl -H "X-API-Key: $KEY" localhost:3000/documents/1
const express = require('express');
const { Client, tollgate } = require('tollgate-client'); // or require('../') from this directory

const client = new Client(process.env.TOLLGATE_SOCKET ?? '/run/tollgate/tollgate.sock', { timeoutMs: 250 });
const app = express();
app.set('trust proxy', 'loopback'); // behind a local proxy: req.ip is the client's

const guard = (permissions) => tollgate(client, { permissions, ip: (req) => req.ip });

app.get('/documents/:id', guard({ documents: ['read'] }), (req, res) => {
  res.json({ id: req.params.id, readBy: req.tollgate.subject, team: req.tollgate.teamId });
});
app.delete('/documents/:id', guard({ documents: ['delete'] }), (req, res) => res.status(204).end());

app.listen(3000);
