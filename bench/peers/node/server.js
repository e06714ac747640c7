'use strict';
// Node.js peer for warren's benchmarks, written the way the http and ws
// documentation write it: GET / answers 200 text/plain "hello"; GET /ws
// echoes every WebSocket message back as received (ws, no compression).
// SIGTERM or SIGINT closes every WebSocket with 1001 and exits.
//
//   node server.js -addr 127.0.0.1:0
const http = require('http');
const { WebSocketServer } = require('ws');

let addr = '127.0.0.1:8084';
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '-addr' || process.argv[i] === '--addr') addr = process.argv[++i];
}
const cut = addr.lastIndexOf(':');
const host = addr.slice(0, cut);
const port = Number(addr.slice(cut + 1));

const hello = Buffer.from('hello');
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': hello.length });
    res.end(hello);
    return;
  }
  res.writeHead(404);
  res.end();
});
server.keepAliveTimeout = 60000;

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

server.listen(port, host, 4096, () => {
  const a = server.address();
  console.log(`node listening addr=${a.address}:${a.port}`);
});

function shutdown() {
  for (const ws of wss.clients) ws.close(1001, 'server shutting down');
  server.close();
  setTimeout(() => process.exit(0), 2000).unref();
  wss.close(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
