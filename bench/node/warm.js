#!/usr/bin/env node
// The warm-authorization work of atlassian-connect-express, done with the library it uses (npm atlassian-jwt,
// tools/node pins 2.0.3), timed on the same URLs and tokens as the Python side (bench/warm.py).
//
// What ACE's authentication middleware does per request once the tenant is known, minus Express itself:
//   decodeSymmetric(token, '', HS256, noVerify=true)  read iss without trusting the token
//   tenants.get(iss)                                  the tenant's shared secret (ACE: its settings store; a Map here)
//   decodeSymmetric(token, secret, HS256)             HS256 signature check
//   exp, with a leeway                                expiry (the leeway's value costs nothing)
//   createQueryStringHash(fromMethodAndUrl(...))      the qsh, compared with the claim
//
// Started once by the Python side, it answers JSON lines on stdin:
//   {"cmd": "load", "file": path}      {tenants: [{clientKey, sharedSecret}], method,
//                                        lists: {name: [{url, token}, ...], ...}}
//   {"cmd": "run", "mode": name, "n": N}   -> {"ns": elapsed nanoseconds, "n": N, "ok": verified}
// A run authorizes N requests from the named list in turn, wrapping round (one entry: the same URL and token N
// times; many: a new token, or a new query and a new token, on every request).
'use strict';

const fs = require('fs');
const path = require('path');
const jwt = require(path.join(__dirname, '..', '..', 'tools', 'node', 'node_modules', 'atlassian-jwt'));
const { serve } = require(path.join(__dirname, '..', '..', 'tools', 'node', 'jsonlines'));

const HS256 = jwt.SymmetricAlgorithm.HS256;
const EXP_LEEWAY_SECONDS = 30; // as JWT_LEEWAY_SECONDS on the Python side

let tenants = new Map();
let method = 'GET';
let lists = {};

function authorize(token, url) {
  const unverified = jwt.decodeSymmetric(token, '', HS256, true);
  const tenant = tenants.get(unverified.iss);
  if (tenant === undefined) {
    throw new Error('unknown tenant');
  }
  const claims = jwt.decodeSymmetric(token, tenant.sharedSecret, HS256);
  const now = Math.floor(Date.now() / 1000);
  if (claims.exp && now > claims.exp + EXP_LEEWAY_SECONDS) {
    throw new Error('token expired');
  }
  const expected = jwt.createQueryStringHash(jwt.fromMethodAndUrl(method, url), false, '');
  if (claims.qsh !== expected) {
    throw new Error('qsh mismatch');
  }
  return claims;
}

function run(mode, n) {
  const requests = lists[mode];
  if (requests === undefined) {
    throw new Error('unknown list ' + mode);
  }
  let ok = 0;
  const count = requests.length;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const request = requests[i % count];
    if (authorize(request.token, request.url).iss) ok++;
  }
  const ns = process.hrtime.bigint() - started;
  return { ns: Number(ns), n, ok };
}

function handle(command) {
  if (command.cmd === 'load') {
    const data = JSON.parse(fs.readFileSync(command.file, 'utf8'));
    tenants = new Map(data.tenants.map((t) => [t.clientKey, { sharedSecret: t.sharedSecret }]));
    method = data.method;
    lists = data.lists;
    return { loaded: true, node: process.version, library: jwt.version };
  }
  if (command.cmd === 'run') {
    return run(command.mode, command.n);
  }
  throw new Error('unknown command ' + command.cmd);
}

serve(handle);
