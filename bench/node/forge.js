#!/usr/bin/env node
// The Forge invocation token (FIT) work of atlassian-connect-express 11.5 (its verify-forge-invocation-token and
// associate-connect middlewares), done with the library it uses (npm jose; tools/node pins the version), timed on the
// same tokens as the Python side (bench/forge.py).
//
// Per request, as ACE does it once the request has reached the middleware:
//   the bearer token from the Authorization header (case-insensitive scheme, as ACE)
//   jwtVerify(token, keys, {issuer: 'forge/invocation-token', audience: <app ARI>, algorithms: ['RS256']})
//                                            RS256 signature with the key of the header's kid, iss, aud, exp/nbf/iat
//   app.installationId, app.apiBaseUrl and principal read from the verified payload
//   the installation's Connect tenant        a Map lookup here (ACE asks its store)
// Two ways to hold the keys ("mode"):
//   cached       createLocalJWKSet(document) once for the life of the process: the best a long-lived server can do
//   per-request  createLocalJWKSet(document) on every request: ACE 11.5 builds its key set per request (with
//                createRemoteJWKSet, which then also fetches the document; the fetch is left out here)
//
// Started once by the Python side, it answers JSON lines on stdin (tools/node/jsonlines.js):
//   {"cmd": "load", "file": path}   {jwks, issuer, audience, installations: {installationId: clientKey}, tokens: [...]}
//   {"cmd": "run", "mode": "cached"|"per-request", "n": N}   -> {"ns": elapsed nanoseconds, "n": N, "ok": verified}
'use strict';

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const TOOLS = path.join(__dirname, '..', '..', 'tools', 'node');
const { serve } = require(path.join(TOOLS, 'jsonlines'));

let jose = null; // jose is an ES module: imported on load
let data = null;
let cachedKeys = null;
let options = null;
let installations = new Map();
let headers = [];

function bearer(authorization) {
  const [scheme, token] = authorization.split(' ');
  if (!scheme || scheme.toLowerCase() !== 'bearer' || !token) {
    throw new Error('not a bearer token');
  }
  return token;
}

async function authorize(authorization, keys) {
  const { payload } = await jose.jwtVerify(bearer(authorization), keys, options);
  const app = payload.app;
  if (!app || typeof app.installationId !== 'string' || typeof app.apiBaseUrl !== 'string') {
    throw new Error('no installation');
  }
  return {
    installationId: app.installationId,
    apiBaseUrl: app.apiBaseUrl,
    accountId: payload.principal,
    clientKey: installations.get(app.installationId),
  };
}

async function run(mode, n) {
  if (mode !== 'cached' && mode !== 'per-request') {
    throw new Error('unknown mode ' + mode);
  }
  const count = headers.length;
  let ok = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const keys = mode === 'cached' ? cachedKeys : jose.createLocalJWKSet(data.jwks);
    const caller = await authorize(headers[i % count], keys);
    if (caller.installationId) ok++;
  }
  const ns = process.hrtime.bigint() - started;
  return { ns: Number(ns), n, ok };
}

async function handle(command) {
  if (command.cmd === 'load') {
    const entry = require.resolve('jose', { paths: [TOOLS] });
    jose = await import(pathToFileURL(entry).href);
    data = JSON.parse(fs.readFileSync(command.file, 'utf8'));
    cachedKeys = jose.createLocalJWKSet(data.jwks);
    options = { issuer: data.issuer, audience: data.audience, algorithms: ['RS256'] };
    installations = new Map(Object.entries(data.installations));
    headers = data.tokens.map((token) => 'Bearer ' + token);
    const version = JSON.parse(fs.readFileSync(path.join(TOOLS, 'node_modules', 'jose', 'package.json'), 'utf8'));
    return { loaded: true, node: process.version, library: version.version };
  }
  if (command.cmd === 'run') {
    return run(command.mode, command.n);
  }
  throw new Error('unknown command ' + command.cmd);
}

serve(handle);
