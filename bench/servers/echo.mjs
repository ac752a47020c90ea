// The anchor server: a bare `ws` server on its own process that answers every
// text frame with the same text, and otherwise keeps nothing per connection.
// IPC commands: mem (after a full GC when --expose-gc), cpu (process.cpuUsage()), stop.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const http = createServer();
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
const { port } = http.address();

process.on('message', (message) => {
  if (message.cmd === 'stop') {
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    http.close(() => process.exit(0));
    return;
  }
  if (message.cmd === 'cpu') process.send({ call: message.call, result: process.cpuUsage() });
  if (message.cmd === 'mem') {
    if (typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    const { rss, heapUsed } = process.memoryUsage();
    process.send({ call: message.call, result: { rss, heapUsed, sessions: wss.clients.size } });
  }
});
process.send({ ready: true, url: `ws://127.0.0.1:${port}/v1` });
