// Preloaded (`node --require`) into the Functions Framework process that runs the original
// Node.js keepalive function for the side-by-side (tests/src/bin/compare/). It changes no
// line of the function; it only points the function's network traffic at the fakes on
// 127.0.0.1 that `keepalive` uses in the same run:
//
// - WhatsApp: the original calls `http.request({host: payload.whatsAppHostname, ...})`, so it
//   can only reach port 80. Here a `host` of the form `127.0.0.1:PORT` (the payload both
//   implementations get) is split into host and port, as a DNS name for port 80 would be.
// - Compute Engine (`@google-cloud/compute` 1.x, https://compute.googleapis.com/compute/v1/...)
//   goes to KEEPALIVE_COMPUTE_ENDPOINT over plain HTTP, path unchanged.
// - The OAuth token endpoint the library signs its JWT for (https://www.googleapis.com/oauth2/v4/token
//   or https://oauth2.googleapis.com/token) goes to the `token_uri` of the service-account key
//   in GOOGLE_APPLICATION_CREDENTIALS.
//
// Below all of that, every TCP connection (`net.Socket#connect`: http, https, tls, SMTP)
// to anything but the loopback addresses is refused, so nothing leaves the machine.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const net = require('net');

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);
const socketConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  // (options[, listener]) | (port[, host][, listener]) | (path[, listener]); a normalized
  // [options, listener] array from net.createConnection.
  let first = args[0];
  if (Array.isArray(first)) first = first[0];
  let host;
  let ipc = false;
  if (first && typeof first === 'object') {
    ipc = typeof first.path === 'string';
    host = first.host || 'localhost';
  } else if (typeof first === 'string' && !/^\d+$/.test(first)) {
    ipc = true;
  } else {
    host = typeof args[1] === 'string' ? args[1] : 'localhost';
  }
  if (!ipc && !LOOPBACK.has(host)) {
    process.nextTick(() => this.destroy(new Error(`redirect.cjs: refused a connection to ${host}`)));
    return this;
  }
  return socketConnect.apply(this, args);
};

function fail(message) {
  process.stderr.write(`redirect.cjs: ${message}\n`);
  process.exit(2);
}

const keyFile = process.env.GOOGLE_APPLICATION_CREDENTIALS;
if (!keyFile) fail('GOOGLE_APPLICATION_CREDENTIALS is not set');
let tokenUri;
try {
  tokenUri = new URL(JSON.parse(fs.readFileSync(keyFile, 'utf8')).token_uri);
} catch (e) {
  fail(`cannot read token_uri from ${keyFile}: ${e.message}`);
}
let computeEndpoint;
try {
  computeEndpoint = new URL(process.env.KEEPALIVE_COMPUTE_ENDPOINT);
} catch (e) {
  fail(`KEEPALIVE_COMPUTE_ENDPOINT is not a URL: ${process.env.KEEPALIVE_COMPUTE_ENDPOINT}`);
}
for (const u of [tokenUri, computeEndpoint]) {
  if (u.protocol !== 'http:' || !['127.0.0.1', 'localhost'].includes(u.hostname)) {
    fail(`${u.href} is not a fake on 127.0.0.1`);
  }
}

const TOKEN_URLS = new Set(['www.googleapis.com/oauth2/v4/token', 'oauth2.googleapis.com/token']);
const COMPUTE_HOSTS = new Set(['compute.googleapis.com', 'www.googleapis.com']);

// (url | options, [options], [callback]) -> [options, callback], as http.request reads them.
function normalize(args) {
  const [a, b, c] = args;
  if (typeof a === 'string' || a instanceof URL) {
    const u = new URL(a);
    const opts = {
      protocol: u.protocol,
      hostname: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
    };
    if (typeof b === 'function') return [opts, b];
    return [Object.assign(opts, b), c];
  }
  return [Object.assign({}, a), b];
}

function toFake(opts, target, path) {
  const headers = Object.assign({}, opts.headers);
  for (const k of Object.keys(headers)) {
    if (k.toLowerCase() === 'host') delete headers[k];
  }
  return Object.assign({}, opts, {
    protocol: 'http:',
    host: undefined,
    hostname: target.hostname,
    port: target.port,
    path,
    headers,
    // The library's agent is an https.Agent, which http.request refuses.
    agent: undefined,
    servername: undefined,
  });
}

const httpsRequest = https.request;
https.request = function request(...args) {
  const [opts, callback] = normalize(args);
  const host = opts.hostname || (opts.host || '').split(':')[0];
  const path = opts.path || '/';
  if (TOKEN_URLS.has(host + path.split('?')[0])) {
    return http.request(toFake(opts, tokenUri, tokenUri.pathname), callback);
  }
  if (COMPUTE_HOSTS.has(host)) {
    return http.request(toFake(opts, computeEndpoint, path), callback);
  }
  // Anything else goes its way, and the connection guard above refuses it.
  return httpsRequest.apply(https, args);
};
https.get = function get(...args) {
  const req = https.request(...args);
  req.end();
  return req;
};

const httpRequest = http.request;
http.request = function request(...args) {
  const first = args[0];
  if (first && typeof first === 'object' && !(first instanceof URL)) {
    const m = /^(127\.0\.0\.1|localhost):(\d+)$/.exec(first.host || '');
    if (m && !first.port && !first.hostname) {
      args[0] = Object.assign({}, first, { host: m[1], port: Number(m[2]) });
    }
  }
  return httpRequest.apply(http, args);
};
// http.get calls Node's internal request, not the property patched above.
http.get = function get(...args) {
  const req = http.request(...args);
  req.end();
  return req;
};
