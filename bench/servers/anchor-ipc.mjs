// What every anchor server (echo, relay) does around its `ws` server: listen
// on a free loopback port, announce its URL to the runner, and answer the
// runner's IPC commands: cpu (process.cpuUsage()), stop, and any other
// command `answer` takes (it returns the result, or undefined for none).

/**
 * @param {import('node:http').Server} http
 * @param {import('ws').WebSocketServer} wss
 * @param {(cmd: string) => unknown} [answer]
 */
export async function serveAnchor(http, wss, answer = () => undefined) {
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address();
  process.on('message', (message) => {
    if (message.cmd === 'stop') {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      http.close(() => process.exit(0));
      return;
    }
    const result = message.cmd === 'cpu' ? process.cpuUsage() : answer(message.cmd);
    if (result !== undefined) process.send({ call: message.call, result });
  });
  process.send({ ready: true, url: `ws://127.0.0.1:${port}/v1` });
}
