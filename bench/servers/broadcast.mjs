// The floor of watch fan-out: a bare `ws` server on its own process that does
// the least a pushed event to many watchers can do. A connection that sends
// `{ op: 'watch', id }` joins the watchers (the frame is echoed back as its
// acknowledgement); a request carrying `frame` (a string) has that text
// encoded once and the same bytes sent to every watcher as a text frame,
// each its own `ws.send`, then is echoed back to its sender as its answer.
// Nothing is parsed, serialised or encoded per watcher, and nothing is
// filtered: every watcher gets every frame.
// IPC commands: cpu (process.cpuUsage()), stop.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { serveAnchor } from './anchor-ipc.mjs';

const TEXT = { binary: false };

const http = createServer();
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
/** Watching connections, in the order they asked. */
const watchers = new Set();
wss.on('connection', (ws) => {
  ws.on('close', () => watchers.delete(ws));
  ws.on('message', (data, isBinary) => {
    const request = JSON.parse(data.toString());
    if (request.op === 'watch') watchers.add(ws);
    if (typeof request.frame === 'string') {
      const bytes = Buffer.from(request.frame);
      for (const watcher of watchers) watcher.send(bytes, TEXT);
    }
    ws.send(data, { binary: isBinary });
  });
});
await serveAnchor(http, wss);
