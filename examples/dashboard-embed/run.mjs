// A dashboard embed: a tiny page on another web server that shows one key's
// state (free, or who holds it, and how many wait), live. It loads the
// browser client from /ui/lockwire-client.js, which this example's static
// server passes through from the lockwire server. A demo worker takes and
// releases the key every few seconds so there is something to watch.
//
//   npm run build && node examples/dashboard-embed/run.mjs [--key deploy] [--no-worker]
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { LockClient } from '@lockwire/client';
import { createLockServer } from '@lockwire/server';

const { values } = parseArgs({
  options: { key: { type: 'string', default: 'deploy' }, 'no-worker': { type: 'boolean', default: false } },
});
const lockwire = await createLockServer({ port: 0 });
const page = await readFile(new URL('./index.html', import.meta.url));

const site = createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  } else if (path === '/ui/lockwire-client.js') {
    // Same origin for the module script; the lockwire server is where the bundle comes from.
    const upstream = await fetch(`${lockwire.httpUrl}/ui/lockwire-client.js`);
    res.writeHead(upstream.status, { 'content-type': 'text/javascript; charset=utf-8' });
    res.end(Buffer.from(await upstream.arrayBuffer()));
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
const { port } = site.address();

const embedUrl = `http://127.0.0.1:${port}/?key=${encodeURIComponent(values.key)}&server=${encodeURIComponent(lockwire.url)}`;
console.log(`lockwire listening on ${lockwire.url}`);
console.log(`embed: ${embedUrl}`);

let worker;
let timer;
if (!values['no-worker']) {
  worker = await LockClient.connect(lockwire.url);
  let lease = null;
  const toggle = async () => {
    if (lease) {
      await lease.release();
      lease = null;
    } else {
      lease = await worker.acquire(values.key, { acquireTimeout: 0, meta: { user: 'demo-worker' } });
    }
  };
  timer = setInterval(() => void toggle().catch(() => undefined), 3000);
}

const stop = async () => {
  clearInterval(timer);
  await worker?.close();
  site.close();
  await lockwire.close();
  console.log('stopped');
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
