// A stand-in with the outside shape of the original Node.js keepalive function, for testing
// the side-by-side harness (tests/tests/compare.rs) where the original is not available. It is
// NOT the original and its figures mean nothing; `compare` is meant to be run with the original
// (BASELINE_FUNCTION). Like the original it is a background function taking a Pub/Sub
// message, talks plain HTTP to `whatsAppHostname` through `http.request({host})`, resets the VM
// through `@google-cloud/compute` 1.x on the first failed request, and throws on a payload
// without its required keys.
'use strict';

const http = require('http');
const Compute = require('@google-cloud/compute');

const compute = new Compute();

function call(host, options) {
  return new Promise((resolve, reject) => {
    const req = http.request(Object.assign({ host, timeout: 8000 }, options), (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        if (res.statusCode < 200 || res.statusCode > 299) {
          reject(new Error(`${options.path}: status ${res.statusCode}`));
          return;
        }
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(new Error(`${options.path}: not JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${options.path}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}

exports.whatsAppKeepalive = async (event, context, callback) => {
  const p = JSON.parse(Buffer.from(event.data, 'base64').toString());
  for (const key of ['zone', 'vm', 'whatsAppHostname', 'whatsAppUsername', 'whatsAppPassword']) {
    if (!p[key]) throw new Error(`${key} missing`);
  }
  try {
    const login = await call(p.whatsAppHostname, {
      method: 'POST',
      path: '/v1/users/login',
      auth: `${p.whatsAppUsername}:${p.whatsAppPassword}`,
    });
    const headers = { Authorization: `Bearer ${login.users[0].token}` };
    for (const path of ['/v1/stats/app', '/v1/stats/db', '/v1/settings/application']) {
      await call(p.whatsAppHostname, { method: 'GET', path, headers });
    }
    const health = await call(p.whatsAppHostname, { method: 'GET', path: '/v1/health', headers });
    if (health.health.gateway_status !== 'connected') throw new Error('not connected');
    callback(null, 'stand-in: healthy');
  } catch (err) {
    await compute.zone(p.zone).vm(p.vm).reset();
    callback(null, `stand-in: reset after ${err.message}`);
  }
};
