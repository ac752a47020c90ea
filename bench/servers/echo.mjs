// The anchor server: a bare `ws` server on its own process that answers every
// text frame with the same text, and otherwise keeps nothing per connection.
// IPC commands: mem (after a full GC when --expose-gc), cpu (process.cpuUsage()), stop.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { serveAnchor } from './anchor-ipc.mjs';

const http = createServer();
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
await serveAnchor(http, wss, (cmd) => {
  if (cmd !== 'mem') return undefined;
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed, sessions: wss.clients.size };
});
