// Interop peer for warren's WebSocket server, run by TestInteropNode:
//   node node_client.js ws://127.0.0.1:PORT/ws
// It exercises echo, ping/pong, a large compressed message and both close
// handshakes with the `ws` package, and prints one line per check; the Go
// test compares them. Exits non-zero on any failure or after 10 s.
'use strict';
const WebSocket = require('ws');

const url = process.argv[2];
const timer = setTimeout(() => { console.log('timeout'); process.exit(2); }, 10000);

function open(protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: true });
    ws.binaryType = 'nodebuffer';
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function next(ws) {
  return new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data, isBinary })));
}

function closed(ws) {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve(code + ' ' + reason.toString())));
}

(async () => {
  const ws = await open(['v1.warren']);
  console.log('open protocol=' + ws.protocol + ' deflate=' + /permessage-deflate/.test(ws.extensions));

  ws.send('hello');
  let m = await next(ws);
  console.log('text ' + (!m.isBinary && m.data.toString() === 'hello'));

  ws.send(Buffer.from([0, 1, 2, 255]));
  m = await next(ws);
  console.log('binary ' + (m.isBinary && m.data.equals(Buffer.from([0, 1, 2, 255]))));

  const big = 'warren '.repeat(60000);
  ws.send(big);
  m = await next(ws);
  console.log('large ' + (m.data.toString() === big));

  const pong = new Promise((resolve) => ws.once('pong', (data) => resolve(data.toString())));
  ws.ping('are you there');
  console.log('pong ' + (await pong));

  // Server-initiated close: the server answers "close-me" with 4000.
  const c1 = closed(ws);
  ws.send('close-me');
  console.log('server close ' + (await c1));

  // Client-initiated close.
  const ws2 = await open([]);
  const c2 = closed(ws2);
  ws2.close(1000, 'bye');
  console.log('client close ' + (await c2));

  clearTimeout(timer);
})().catch((e) => { console.log('error ' + e); process.exit(1); });
