import { createConnection, Socket, type NetConnectOpts } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { connectWith, startServer } from './auth-harness.js';
import { RawClient, sessionLog, type Frame } from './server-harness.js';
import { WriteTurns } from '../src/write-turns.js';

/**
 * A watcher whose socket this process can name: the server's socket for it
 * is the one whose remote port is the watcher's local port.
 */
async function openWatcher(url: string, prefix: string) {
  let socket: Socket | null = null;
  const { client } = await RawClient.connect(url, {
    createConnection: (options) => (socket = createConnection(options as NetConnectOpts)),
  });
  if (!socket) throw new Error('the watcher connected without its socket');
  const port = (socket as Socket).localPort;
  expect(await client.request({ op: 'watch', id: 'w', prefix })).toMatchObject({ ok: true });
  return { client, port };
}

/** Counts the writes (each one system call) the server's sockets to `port` make from here on. */
function countWritesTo(port: number | undefined) {
  const writes = { count: 0 };
  const count = function (this: Socket) {
    if (this.remotePort === port) writes.count++;
  };
  const write = Socket.prototype._write;
  const writev = Socket.prototype._writev;
  vi.spyOn(Socket.prototype, '_write').mockImplementation(function (this: Socket, ...args) {
    count.call(this);
    return write.apply(this, args);
  });
  vi.spyOn(Socket.prototype, '_writev').mockImplementation(function (this: Socket, ...args) {
    count.call(this);
    return writev?.apply(this, args);
  });
  return writes;
}

/** The next `n` events `client` receives, in order. */
async function events(client: RawClient, n: number): Promise<Frame[]> {
  const got: Frame[] = [];
  while (got.length < n) got.push(await client.next((f) => f.type === 'event', `event ${got.length + 1} of ${n}`));
  return got;
}

/** A session holding `count` keys under `prefix` (meta of `metaBytes` each), acquired one request at a time. */
async function holder(url: string, prefix: string, count: number, metaBytes = 0) {
  const { client } = await connectWith(url, null);
  const meta = metaBytes > 0 ? { pad: 'm'.repeat(metaBytes) } : undefined;
  for (let id = 0; id < count; id++) client.send({ op: 'acquire', id, key: `${prefix}${String(id).padStart(4, '0')}`, ...(meta ? { meta } : {}) });
  expect(await client.reply(count - 1)).toMatchObject({ acquired: true });
  return client;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('write turns', () => {
  it("sends the events of one step to a watcher in two writes: the first at once, the rest gathered until the turn's end", async () => {
    const { server } = await startServer({ limits: { maxLocksPerSession: 100 } });
    const owner = await holder(server.url, 'doc:', 50);
    const watcher = await openWatcher(server.url, 'doc:');
    const writes = countWritesTo(watcher.port);
    // The holder's session ends: one step releases its 50 keys.
    owner.ws.terminate();
    const released = await events(watcher.client, 50);
    expect(released.map((f) => [f.event, f.key])).toEqual(released.map((_, i) => ['released', `doc:${String(i).padStart(4, '0')}`]));
    expect(writes.count).toBe(2);
    // The next turn's first frame is written at once again.
    expect(await watcher.client.request({ op: 'ping', id: 'p' })).toMatchObject({ ok: true });
    expect(writes.count).toBe(3);
  });

  it('writes a grant that is its connection\'s one frame of the turn at once, never holding it for the turn\'s end', async () => {
    const { server } = await startServer();
    const { client: holder } = await connectWith(server.url, null);
    expect(await holder.request({ op: 'acquire', id: 'h', key: 'k' })).toMatchObject({ acquired: true });
    const waiter = await openWatcher(server.url, 'unused:');
    waiter.client.send({ op: 'acquire', id: 'w', key: 'k' });
    expect(await waiter.client.next((f) => f.type === 'queued')).toMatchObject({ id: 'w' });
    const held = vi.spyOn(WriteTurns.prototype, 'hold');
    const writes = countWritesTo(waiter.port);
    expect(await holder.request({ op: 'release', id: 'r', key: 'k' })).toMatchObject({ ok: true });
    expect(await waiter.client.reply('w')).toMatchObject({ acquired: true });
    expect(writes.count).toBe(1);
    // Its socket was never corked for the turn: the grant was written as it was sent.
    expect(held.mock.calls.filter(([socket]) => (socket as Socket).remotePort === waiter.port)).toEqual([]);
  });

  it('answers the requests of one read in few writes, each answer whole and in order', async () => {
    const { server } = await startServer();
    const watcher = await openWatcher(server.url, 'unused:');
    const writes = countWritesTo(watcher.port);
    // One synchronous run of sends: the server reads them together.
    for (let id = 0; id < 100; id++) watcher.client.send({ op: 'ping', id });
    for (let id = 0; id < 100; id++) expect(await watcher.client.next()).toMatchObject({ type: 'reply', id, ok: true });
    // The answers come out in a few turns, each written as its first answer and then the rest
    // together: a handful of writes, not one per answer.
    expect(writes.count).toBeLessThanOrEqual(8);
  });

  it('writes a burst of events out in pieces of about 64 KiB rather than holding it all to the end of the turn', async () => {
    const { server } = await startServer({ limits: { maxLocksPerSession: 500 } });
    // 200 events of about 1.1 KiB: about 220 KiB in one step.
    const owner = await holder(server.url, 'big:', 200, 1000);
    const watcher = await openWatcher(server.url, 'big:');
    const writes = countWritesTo(watcher.port);
    owner.ws.terminate();
    const released = await events(watcher.client, 200);
    expect(released.at(-1)).toMatchObject({ event: 'released', key: 'big:0199' });
    // The first at once, then one write per 64 KiB gathered, the rest at the turn's end.
    expect(writes.count).toBeGreaterThanOrEqual(4);
    expect(writes.count).toBeLessThanOrEqual(6);
  });

  it('does not take the frames it gathers in a turn for the backlog of a slow reader', async () => {
    const sessions = sessionLog();
    const slowReaders: string[] = [];
    const { server } = await startServer({
      limits: { maxLocksPerSession: 500, maxBufferedBytes: 16 * 1024 },
      logger: {
        ...sessions.logger,
        info(obj, msg) {
          if (msg.startsWith('slow reader')) slowReaders.push(msg);
          sessions.logger.info(obj, msg);
        },
      },
    });
    // About 165 KiB of events in one step to a watcher that reads: over the
    // limit while gathered, never unread.
    const owner = await holder(server.url, 'doc:', 150, 1000);
    const watcher = await openWatcher(server.url, 'doc:');
    owner.ws.terminate();
    expect((await events(watcher.client, 150)).at(-1)).toMatchObject({ event: 'released', key: 'doc:0149' });
    expect(await watcher.client.request({ op: 'ping', id: 'p' })).toMatchObject({ ok: true });
    expect(slowReaders).toEqual([]);
  });
});
