import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { whenCloseReceived } from '../src/close-handshake.js';
import { connectWith, startServer } from './auth-harness.js';
import { RawClient, within, type Frame } from './server-harness.js';
import { silentHolderWithWaiter } from './silent-holder.js';
import { openSilentPeer, ServerOpcode, type SilentPeer } from './silent-peer.js';

/**
 * Shorter than the 2 s within which the server cuts a connection whose
 * close handshake it finished: a cut the test awaits this long came from
 * the injected clock, not from a real-time backstop.
 */
const BEFORE_REAL_CUT_MS = 1000;

/** Limits under which one session holds the fillers and a stalled client's replies pile up on the server unchecked. */
const ROOMY_LIMITS = {
  maxLocksPerSession: 5000,
  maxPendingPerSession: 5000,
  maxBufferedBytes: 1 << 30,
  rateLimit: 100_000,
  rateBurst: 100_000,
};

/** Has `filler` hold 3000 locks under `f:`, each with 1 KB of meta: a `list` of them is about 3.5 MB. */
async function holdFillers(filler: RawClient): Promise<void> {
  const pad = 'x'.repeat(1000);
  const count = 3000;
  for (let i = 0; i < count; i++) filler.send({ op: 'acquire', id: `f${i}`, key: `f:${i}`, meta: { pad } });
  expect(await filler.reply(`f${count - 1}`)).toMatchObject({ acquired: true });
  filler.inbox.length = 0;
}

/**
 * Stops `client` reading (a stalled tab, a busy process) with more of its
 * replies on their way than the kernel's socket buffers take: ten lists of
 * the fillers. Once a round trip on `other` is done the server has answered
 * them, and its answer to a close frame `client` sends now waits behind them.
 */
async function stopReading(client: RawClient, other: RawClient): Promise<void> {
  (client.ws as unknown as { _socket: Socket })._socket.pause();
  for (let i = 0; i < 10; i++) client.send({ op: 'list', id: `l${i}`, prefix: 'f:', limit: 10_000 });
  await other.request({ op: 'ping', id: 'lists answered' });
}

/** The welcome the server sent `peer`. */
function welcomeOf(peer: SilentPeer): Record<string, unknown> {
  const first = peer.frames().find((frame) => frame.opcode === ServerOpcode.Text);
  return first ? (JSON.parse(first.payload.toString()) as Record<string, unknown>) : {};
}

/** The replies the server sent `peer` to its request `id`. */
function repliesTo(peer: SilentPeer, id: number): Array<Record<string, unknown>> {
  return peer
    .frames()
    .filter((frame) => frame.opcode === ServerOpcode.Text)
    .map((frame) => JSON.parse(frame.payload.toString()) as Record<string, unknown>)
    .filter((message) => message.type === 'reply' && message.id === id);
}

describe('a close by the client', () => {
  it.each([
    ['off', 0],
    ['on', 60_000],
  ])(
    'with grace %s, a close with 1000 ends the session as soon as the server read it: its lock goes to the waiter while its TCP connection is still open',
    async (_grace, sessionGrace) => {
      const { server, clock } = await startServer({ sessionGrace });
      const { peer, waiter } = await silentHolderWithWaiter(server.url);
      peer.write(RawSocket.closeFrame(1000));
      expect(await peer.closeFrame()).toBe(1000);
      expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
      expect(peer.isCut()).toBe(false);
      expect(server.sessionCount()).toBe(1);
      // The peer never ends its side: the server cuts it 2 s after the handshake.
      clock.advance(2000);
      await peer.cut(BEFORE_REAL_CUT_MS);
    },
  );

  it('with grace off, a close with 1001 releases the locks at once too', async () => {
    const { server } = await startServer();
    const { peer, waiter } = await silentHolderWithWaiter(server.url);
    peer.write(RawSocket.closeFrame(1001));
    expect(await peer.closeFrame()).toBe(1001);
    expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
    expect(peer.isCut()).toBe(false);
  });

  it('with grace on, a close with 1001 detaches the session as soon as the server read it: its queued acquire leaves the queue, its lock stays, and it resumes', async () => {
    const { server, clock } = await startServer({ sessionGrace: 60_000 });
    const { client: holder } = await connectWith(server.url, null);
    await holder.request({ op: 'acquire', id: 1, key: 'q' });
    const { client: watcher } = await connectWith(server.url, null);
    await watcher.request({ op: 'watch', id: 1, prefix: '' });
    const { peer, waiter } = await silentHolderWithWaiter(server.url);
    peer.write(RawSocket.json({ op: 'acquire', id: 2, key: 'q' }));
    await watcher.next((f) => f.type === 'event' && f.event === 'queued' && f.key === 'q');
    peer.write(RawSocket.closeFrame(1001));
    expect(await peer.closeFrame()).toBe(1001);
    await watcher.next((f) => f.type === 'event' && f.event === 'dequeued' && f.key === 'q');
    expect(peer.isCut()).toBe(false);
    const { session, resume } = welcomeOf(peer);
    const resumed = await connectWith(`${server.url}?session=${String(session)}&resume=${String(resume)}`, null);
    expect(resumed.welcome).toMatchObject({ resumed: true, held: [{ key: 'k' }] });
    expect(await waiter.request({ op: 'status', id: 3, key: 'k' })).toMatchObject({ locked: true });
    clock.advance(2000);
    await peer.cut(BEFORE_REAL_CUT_MS);
    expect(await resumed.client.request({ op: 'release', id: 1, key: 'k' })).toMatchObject({ ok: true });
    expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
  });

  it('does not grant a queued acquire of a client that closed with 1000, though its TCP connection is still open', async () => {
    const { server } = await startServer();
    const { client: holder } = await connectWith(server.url, null);
    await holder.request({ op: 'acquire', id: 1, key: 'k' });
    const peer = await openSilentPeer(server.url);
    peer.write(RawSocket.json({ op: 'acquire', id: 1, key: 'k' }), RawSocket.json({ op: 'ping', id: 2 }));
    await peer.reply(2);
    const { client: third } = await connectWith(server.url, null);
    third.send({ op: 'acquire', id: 2, key: 'k' });
    await third.next((f) => f.type === 'queued');
    peer.write(RawSocket.closeFrame(1000));
    expect(await peer.closeFrame()).toBe(1000);
    await holder.request({ op: 'release', id: 2, key: 'k' });
    expect(await third.reply(2)).toMatchObject({ ok: true, acquired: true });
    expect(repliesTo(peer, 1)).toEqual([]);
  });

  it('ends the session of a client that is not reading at its close frame with 1000, before the answer is written out: its queued acquire leaves the queue and the lock goes to the next waiter', async () => {
    const { server } = await startServer({ limits: ROOMY_LIMITS });
    const { client: filler } = await connectWith(server.url, null);
    await holdFillers(filler);
    const { client: holder } = await connectWith(server.url, null);
    expect(await holder.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    const closer = await connectWith(server.url, null);
    closer.client.send({ op: 'acquire', id: 1, key: 'k' });
    await closer.client.next((f) => f.type === 'queued', 'the closer queued');
    const { client: waiter } = await connectWith(server.url, null);
    expect(await waiter.request({ op: 'watch', id: 1, prefix: 'k' })).toMatchObject({ ok: true });
    waiter.send({ op: 'acquire', id: 2, key: 'k' });
    await waiter.next((f) => f.type === 'queued', 'the waiter queued');

    await stopReading(closer.client, holder);
    closer.client.ws.close(1000, 'done');
    const dequeued = (f: Frame) => f.type === 'event' && f.event === 'dequeued' && f.session === closer.welcome.session;
    await waiter.next(dequeued, "the closer's acquire to leave the queue", BEFORE_REAL_CUT_MS);

    expect(await holder.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ released: true });
    expect(await waiter.reply(2)).toMatchObject({ acquired: true });
  }, 20_000);

  it('with grace on, detaches the session of a client that is not reading at its close frame with 4000: a lock stolen then is told as lost after the resumed welcome', async () => {
    const { server } = await startServer({ sessionGrace: 60_000, limits: ROOMY_LIMITS });
    const { client: thief } = await connectWith(server.url, null);
    await holdFillers(thief);
    expect(await thief.request({ op: 'acquire', id: 1, key: 'q' })).toMatchObject({ acquired: true });
    expect(await thief.request({ op: 'watch', id: 2, prefix: 'q' })).toMatchObject({ ok: true });
    const holder = await connectWith(server.url, null);
    expect(await holder.client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    holder.client.send({ op: 'acquire', id: 2, key: 'q' });
    await holder.client.next((f) => f.type === 'queued', 'the holder queued');

    await stopReading(holder.client, thief);
    holder.client.ws.close(4000, 'going to resume');
    const dequeued = (f: Frame) => f.type === 'event' && f.event === 'dequeued' && f.key === 'q';
    await thief.next(dequeued, "the holder's acquire to leave the queue", BEFORE_REAL_CUT_MS);
    expect(await thief.request({ op: 'acquire', id: 3, key: 'k', steal: true })).toMatchObject({ acquired: true });

    const query = `?session=${encodeURIComponent(String(holder.welcome.session))}&resume=${encodeURIComponent(String(holder.welcome.resume))}`;
    const again = await connectWith(server.url + query, null);
    expect(again.welcome).toMatchObject({ session: holder.welcome.session, resumed: true, held: [] });
    // A ping after the resumed welcome is answered after every lost the server knows of.
    await again.client.request({ op: 'ping', id: 1 });
    expect(again.client.inbox.filter((f) => f.type === 'lost')).toEqual([
      { type: 'lost', key: 'k', token: expect.any(Number), reason: 'stolen' },
    ]);
  }, 20_000);

  it('ends without grace the session of a ws client that closes with 1000 and then ends its TCP side', async () => {
    const { server } = await startServer({ sessionGrace: 60_000 });
    const { client, welcome } = await RawClient.connect(server.url);
    await client.request({ op: 'acquire', id: 1, key: 'k' });
    client.ws.close(1000);
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1000 });
    const url = `${server.url}?session=${String(welcome.session)}&resume=${String(welcome.resume)}`;
    const { welcome: fresh, client: next } = await connectWith(url, null);
    expect(fresh).toMatchObject({ resumed: false });
    expect(await next.request({ op: 'status', id: 1, key: 'k' })).toMatchObject({ locked: false });
  });
});

const wsServers: WebSocketServer[] = [];

afterEach(async () => {
  for (const wss of wsServers.splice(0)) {
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  }
});

/**
 * A bare ws server on port 0 that hands its connections to `connected` and
 * greets them with a text frame; resolves with its URL once listening.
 */
async function wsServer(connected: (ws: WebSocket, socket: Duplex) => void): Promise<string> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  wsServers.push(wss);
  wss.on('connection', (ws, req) => {
    connected(ws, req.socket);
    ws.send('{}');
  });
  await within(new Promise((resolve) => wss.once('listening', resolve)), 'the ws server to listen');
  const address = wss.address();
  if (address === null || typeof address === 'string') throw new Error('the ws server has no TCP address');
  return `ws://127.0.0.1:${address.port}/`;
}

describe('whenCloseReceived', () => {
  it("reports the code of the peer's close frame once, as soon as it is read, before the answer is written out", async () => {
    const codes: number[] = [];
    // Whether the server's side had ended (the answer written out) when the code was reported.
    const answered: boolean[] = [];
    let closeEmitted = false;
    const url = await wsServer((ws, socket) => {
      whenCloseReceived(ws, socket, (code) => {
        codes.push(code);
        answered.push(socket.writableEnded);
      });
      ws.on('close', () => (closeEmitted = true));
    });
    const peer = await openSilentPeer(url);
    peer.write(RawSocket.closeFrame(4000));
    expect(await peer.closeFrame()).toBe(4000);
    expect({ codes, answered, closeEmitted }).toEqual({ codes: [4000], answered: [false], closeEmitted: false });
  });

  it("leaves a close whose code ws does not expose to ws's close event", async () => {
    const codes: number[] = [];
    let closed: (code: number) => void = () => undefined;
    const closeCode = new Promise<number>((resolve) => (closed = resolve));
    const url = await wsServer((ws, socket) => {
      // As a ws that keeps the received close elsewhere: the field reads as missing.
      Object.defineProperty(ws, '_closeFrameReceived', { get: () => undefined, set: () => undefined });
      whenCloseReceived(ws, socket, (code) => codes.push(code));
      ws.on('close', (code) => closed(code));
    });
    const { client } = await RawClient.connect(url);
    client.ws.close(4000);
    expect(await within(closeCode, "the server's close event")).toBe(4000);
    expect(codes).toEqual([]);
  });
});
