// A real HTTP/1.1 backend for the integration tests: Node's own http server (keep-alive,
// pipelining, chunked encoding, 100-continue), with routes that exercise the proxy.
// Usage: node backend.js PORT   (prints "ready" when listening)
'use strict';
const http = require('http');
const crypto = require('crypto');

const fs = require('fs');

const port = parseInt(process.argv[2], 10);
// With REQUEST_LOG set, every request Node's own parser accepted is appended there as a JSON
// line: the desync suite compares them with stapler's access log.
const requestLog = process.env.REQUEST_LOG ? fs.openSync(process.env.REQUEST_LOG, 'a') : null;
let requests = 0;
let connections = 0;

function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}
const block = pattern(1 << 20);

function sendJson(res, status, obj) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': body.length });
  res.end(body);
}

function streamBytes(req, res, n, chunked) {
  const headers = { 'Content-Type': 'application/octet-stream' };
  if (!chunked) headers['Content-Length'] = n;
  res.writeHead(200, headers);
  let left = n;
  const pump = () => {
    while (left > 0) {
      const k = Math.min(left, block.length);
      left -= k;
      if (!res.write(k === block.length ? block : block.subarray(0, k))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

const server = http.createServer((req, res) => {
  requests++;
  if (requestLog !== null) {
    const xff = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2)
      if (req.rawHeaders[i].toLowerCase() === 'x-forwarded-for') xff.push(req.rawHeaders[i + 1]);
    fs.writeSync(requestLog, JSON.stringify({ method: req.method, url: req.url, xff }) + '\n');
  }
  if (req.url.startsWith('/r/')) { // the desync corpus: read the body, name the request answered
    req.on('data', () => {});
    req.on('end', () => {
      res.writeHead(200, { 'X-Answer': req.url, 'Content-Length': 2 });
      res.end('ok');
    });
    return;
  }
  const url = new URL(req.url, 'http://backend');
  const path = url.pathname;
  const q = (name, dflt) => (url.searchParams.has(name) ? url.searchParams.get(name) : dflt);
  if (path === '/page') { // for a browser: n sub-resources, then the protocols they came over
    const n = parseInt(q('n', '50'), 10);
    let html = '<!doctype html><html><head><title>loading</title></head><body>' +
      '<h1>stapler: ' + n + ' resources</h1><div>';
    for (let i = 0; i < n; i++) html += '<img width="24" height="24" src="/pixel?i=' + i + '">';
    html += '</div><pre id="result"></pre><script>window.onload = () => {' +
      'const all = [performance.getEntriesByType("navigation")[0]]' +
      '.concat(performance.getEntriesByType("resource"));' +
      'const count = {}; for (const e of all) count[e.nextHopProtocol] = (count[e.nextHopProtocol] || 0) + 1;' +
      'document.getElementById("result").textContent = JSON.stringify(count);' +
      'document.title = "done " + JSON.stringify(count); };</script></body></html>';
    res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(html) });
    return res.end(html);
  }
  if (path === '/pixel') {
    const hue = (parseInt(q('i', '0'), 10) * 37) % 360;
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24">' +
      '<rect width="24" height="24" fill="hsl(' + hue + ',70%,50%)"/></svg>';
    res.writeHead(200, { 'Content-Type': 'image/svg+xml', 'Content-Length': svg.length });
    return res.end(svg);
  }
  if (path === '/bytes') return streamBytes(req, res, parseInt(q('n', '0'), 10), q('chunked', '0') === '1');
  if (path === '/stats') return sendJson(res, 200, { requests, connections });
  if (path.startsWith('/status/')) {
    const code = parseInt(path.slice(8), 10);
    res.writeHead(code, code === 204 || code === 304 ? {} : { 'Content-Length': 2 });
    return res.end(code === 204 || code === 304 ? undefined : 'ok');
  }
  if (path === '/close-early') return req.socket.destroy();
  if (path === '/reset') {
    res.writeHead(200, { 'Content-Length': 1000000 });
    res.write('partial');
    return setTimeout(() => req.socket.resetAndDestroy ? req.socket.resetAndDestroy() : req.socket.destroy(), 50);
  }
  if (path === '/garbage') {
    req.socket.write('this is not HTTP at all\r\n\r\n');
    return req.socket.end();
  }
  // Everything else: consume the body, then describe the request.
  const hash = crypto.createHash('sha256');
  let length = 0;
  req.on('data', (d) => { hash.update(d); length += d.length; });
  req.on('end', () => {
    const reply = () => sendJson(res, 200, {
      method: req.method, url: req.url, httpVersion: req.httpVersion,
      headers: req.rawHeaders, bodyLength: length, bodySha256: hash.digest('hex'),
      remotePort: req.socket.remotePort, connectionRequests: req.socket.stapler_requests,
      trailers: req.rawTrailers,
    });
    const delay = parseInt(q('delay', '0'), 10);
    if (delay) setTimeout(reply, delay); else reply();
  });
});

server.on('connection', (sock) => {
  connections++;
  sock.stapler_requests = 0;
});
server.on('request', (req) => { req.socket.stapler_requests++; });
server.keepAliveTimeout = parseInt(process.env.KEEPALIVE_MS || '5000', 10);
server.listen(port, '127.0.0.1', () => { process.stdout.write('ready\n'); });
process.on('SIGTERM', () => process.exit(0));
