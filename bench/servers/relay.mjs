// The anchor of disconnect-to-grant: a bare `ws` server on its own process
// that does the least a pushed handoff on disconnect can do. A connection
// that sends `{ op: 'wait', id }` joins a FIFO (the frame is echoed back as
// its acknowledgement); when any connection's socket ends or resets, the
// FIFO's head is sent `{ type: 'gone' }`. The drop is seen on the socket's
// 'end' or 'error', before `ws` emits 'close', as lockwire sees it.
// IPC commands: cpu (process.cpuUsage()), stop, lastDrop (when the latest drop
// was seen: `process.hrtime.bigint()` as a decimal string, for
// `bench/drop-phases.mjs`).
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { serveAnchor } from './anchor-ipc.mjs';

const GONE = JSON.stringify({ type: 'gone' });

const http = createServer();
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
/** Connections waiting, in arrival order. */
const waiting = [];
/** When the latest drop was seen, on the monotonic clock every process of the machine shares. */
let lastDrop = 0n;
wss.on('connection', (ws, request) => {
  let dropped = false;
  const drop = () => {
    if (dropped) return;
    dropped = true;
    lastDrop = process.hrtime.bigint();
    const at = waiting.indexOf(ws);
    if (at >= 0) waiting.splice(at, 1);
    waiting.shift()?.send(GONE);
  };
  request.socket.prependListener('end', drop);
  request.socket.prependListener('error', drop);
  ws.on('message', (data, isBinary) => {
    if (JSON.parse(data.toString()).op === 'wait') waiting.push(ws);
    ws.send(data, { binary: isBinary });
  });
});
await serveAnchor(http, wss, (cmd) => (cmd === 'lastDrop' ? String(lastDrop) : undefined));
