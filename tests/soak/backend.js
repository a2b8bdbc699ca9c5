// The backend of the soak scripts: Node's own HTTP/1.1 server (keep-alive, chunked bodies),
// derived from tests/integration/backend.js, plus a WebSocket echo.
// Usage: node backend.js PORT   (prints "ready" when listening)
//   GET  /small?id=X        200 "small X\n"
//   GET  /bytes?n=N&id=X    N bytes of a fixed 1 MiB pattern, repeated (chunked=1: chunked)
//   GET  /stats             {"requests", "connections", "websockets", "wsMessages", "inflight":
//                           the requests whose body is still being read: id, the socket's
//                           remote port, bytes so far, milliseconds since the headers}
//   any other request       the body is read and hashed: JSON {method, url, bodyLength,
//                           bodySha256}
//   GET with Upgrade: websocket   101, then every data frame is echoed with its opcode and
//                           payload; ping gets pong, close gets close.
// Every HTTP response carries X-Id: the id query parameter, so a client can tell whose
// answer it got.
'use strict';
const http = require('http');
const crypto = require('crypto');

const port = parseInt(process.argv[2], 10);
let requests = 0;
let connections = 0;
let websockets = 0;
let wsMessages = 0;
const inflight = new Map();

function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}
const block = pattern(1 << 20);

function sendJson(res, status, obj, id) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': body.length,
                          'X-Id': id });
  res.end(body);
}

function streamBytes(res, n, chunked, id) {
  const headers = { 'Content-Type': 'application/octet-stream', 'X-Id': id };
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
  const url = new URL(req.url, 'http://backend');
  const path = url.pathname;
  const id = url.searchParams.get('id') || '-';
  if (req.method === 'GET' && path === '/small') {
    const body = Buffer.from('small ' + id + '\n');
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length, 'X-Id': id });
    return res.end(body);
  }
  if (req.method === 'GET' && path === '/bytes')
    return streamBytes(res, parseInt(url.searchParams.get('n') || '0', 10),
                       url.searchParams.get('chunked') === '1', id);
  if (req.method === 'GET' && path === '/stats')
    return sendJson(res, 200, {
      requests, connections, websockets, wsMessages,
      inflight: Array.from(inflight.values()).map((r) => Object.assign({}, r, { ms: Date.now() - r.started })),
    }, id);
  const hash = crypto.createHash('sha256');
  let length = 0;
  const entry = { id, port: req.socket.remotePort, bytes: 0, started: Date.now() };
  inflight.set(req, entry);
  req.on('data', (d) => { hash.update(d); length += d.length; entry.bytes = length; });
  req.on('close', () => inflight.delete(req));
  req.on('end', () => {
    inflight.delete(req);
    sendJson(res, 200, { method: req.method, url: req.url, bodyLength: length,
                         bodySha256: hash.digest('hex') }, id);
  });
});

server.on('connection', () => { connections++; });

// ---- WebSocket echo (RFC 6455), unfragmented messages as the soak client sends them ----

function frame(opcode, payload) {
  const n = payload.length;
  let head;
  if (n < 126) head = Buffer.from([0x80 | opcode, n]);
  else if (n < 65536) { head = Buffer.alloc(4); head[0] = 0x80 | opcode; head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2); }
  return Buffer.concat([head, payload]);
}

server.on('upgrade', (req, sock, head) => {
  const key = req.headers['sec-websocket-key'];
  if (!key || (req.headers.upgrade || '').toLowerCase() !== 'websocket') {
    sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  websockets++;
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
             'Sec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
  const onData = () => {
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0] & 0x0f;
      let n = buf[1] & 0x7f;
      let pos = 2;
      if (n === 126) { if (buf.length < 4) return; n = buf.readUInt16BE(2); pos = 4; }
      else if (n === 127) { if (buf.length < 10) return; n = Number(buf.readBigUInt64BE(2)); pos = 10; }
      const masked = (buf[1] & 0x80) !== 0;
      const mask = masked ? buf.subarray(pos, pos + 4) : null;
      if (masked) pos += 4;
      if (buf.length < pos + n) return;
      const payload = Buffer.from(buf.subarray(pos, pos + n));
      if (masked) for (let i = 0; i < n; i++) payload[i] ^= mask[i & 3];
      buf = buf.subarray(pos + n);
      if (op === 0x8) { sock.end(frame(0x8, payload.subarray(0, 2))); return; }
      if (op === 0x9) sock.write(frame(0xA, payload));
      else if (op !== 0xA) { wsMessages++; sock.write(frame(op, payload)); }
    }
  };
  sock.on('data', (d) => { buf = buf.length ? Buffer.concat([buf, d]) : d; onData(); });
  sock.on('error', () => {});
  sock.on('end', () => sock.end());     // the client (through stapler) closed: close too
  onData();
});

server.keepAliveTimeout = parseInt(process.env.KEEPALIVE_MS || '5000', 10);
server.listen(port, '127.0.0.1', 4096, () => { process.stdout.write('ready\n'); });
process.on('SIGTERM', () => process.exit(0));
