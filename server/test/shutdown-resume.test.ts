import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock, type Clock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer } from '../src/server.js';
import { SECRET, token } from './auth-harness.js';
import { sessionInGrace } from './resume-harness.js';
import { RawClient, within, type Frame } from './server-harness.js';

const servers: LockServer[] = [];
const sockets: WebSocket[] = [];
/** Opens the store gates a failed test left shut, so its resume and server can end. */
const gates: Array<() => void> = [];
/** Runs out the drain delay of a server a failed test left draining, so its close() ends. */
const drains: Array<() => void> = [];
afterEach(async () => {
  for (const open of gates.splice(0)) open();
  for (const ws of sockets.splice(0)) ws.terminate();
  const closing = Promise.all(servers.splice(0).map((server) => server.close()));
  for (const drain of drains.splice(0)) drain();
  await closing;
});

/** Lets every pending callback of the event loop run a few times over, so an unawaited step gets its chance. */
async function turns(count = 20): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * A manual clock whose next read runs `onNextRead` first: a resume's token
 * check reads the clock, so a hook set before the resume runs while its
 * credentials are being checked.
 */
function hookedClock() {
  const manual = createManualClock(Date.now());
  let hook: (() => void) | null = null;
  const clock: Clock = {
    now: () => {
      const run = hook;
      hook = null;
      run?.();
      return manual.now();
    },
    monotonic: () => manual.monotonic(),
    setTimeout: (fn, ms) => manual.setTimeout(fn, ms),
    clearTimeout: (handle) => manual.clearTimeout(handle),
  };
  return { manual, clock, onNextRead: (run: () => void) => void (hook = run) };
}

/** Opens a resume of the session in grace; `status` is its upgrade's HTTP status when refused. */
function resume(url: string, options: WebSocket.ClientOptions = {}) {
  const ws = new WebSocket(url, options);
  sockets.push(ws);
  ws.on('error', () => undefined);
  const refused = new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  return { ws, refused };
}

describe('shutdown and a resume in flight', () => {
  it.each([
    { what: 'claimed by a resume in flight', failed: false },
    { what: 'whose resume could not read the store while the server closed (instead of putting it back into grace)', failed: true },
  ])('ends a session $what in the store before the store is closed', async ({ failed }) => {
    const { server, session, order, reading, hold, release, resumeUrl } = await sessionInGrace(servers, gates);
    hold();
    const resumed = resume(resumeUrl);
    await within(reading, 'the resume to read the store');

    const closed = server.close();
    // Time for the shutdown to reach the store's close, were it not waiting for the claimed session.
    await turns();
    expect(order).toEqual([]);
    release(failed);
    await within(closed, 'close()');
    expect(await within(resumed.refused, 'the refusal of the resume')).toBe(503);
    await turns();
    expect(order).toEqual([`closeSession ${session}`, 'close']);
  });

  it('closes a resumed connection that opened as shutdown began with 1001 and ends its session before the store is closed', async () => {
    const { server, session, order, reading, hold, release, resumeUrl } = await sessionInGrace(servers, gates);
    hold();
    const { ws } = resume(resumeUrl);
    const frames: Frame[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
    const closedWith = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await within(reading, 'the resume to read the store');
    release();
    // The server completes the handshake in the step that opens the session.
    await within(new Promise((resolve) => ws.once('open', resolve)), 'the resumed connection to open');

    await within(server.close(), 'close()');
    expect(await within(closedWith, 'the resumed connection to close')).toBe(1001);
    expect(frames[0]).toMatchObject({ type: 'welcome', session, resumed: true, held: [expect.objectContaining({ key: 'k' })] });
    await turns();
    expect(order).toEqual([`closeSession ${session}`, 'close']);
  });

  it('leaves a live session served, its lock held, when its resume is refused 503 because the drain began while its credentials were checked', async () => {
    const { manual, clock, onNextRead } = hookedClock();
    drains.push(() => manual.advance(120_000));
    const server = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      clock,
      store: createMemoryStore({ clock }),
      sessionGrace: 60_000,
      drainDelay: 60_000,
      auth: { secret: SECRET },
    });
    servers.push(server);
    const bearer = async (sub: string) => ({ headers: { authorization: `Bearer ${await token({ sub, locks: ['*'], watch: ['*'] })}` } });
    const ana = await bearer('ana');
    const holder = await RawClient.connect(server.url, ana);
    const waiter = await RawClient.connect(server.url, await bearer('bo'));
    sockets.push(holder.client.ws, waiter.client.ws);
    expect(await holder.client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    waiter.client.send({ op: 'acquire', id: 1, key: 'k' });
    await waiter.client.next((f) => f.type === 'queued', 'queued');

    // The holder's client takes its connection for dead and resumes it; the drain begins while the resume's token is checked.
    let closed: Promise<void> | null = null;
    onNextRead(() => (closed = server.close()));
    const query = `?session=${encodeURIComponent(String(holder.welcome.session))}&resume=${encodeURIComponent(String(holder.welcome.resume))}`;
    const resumed = resume(server.url + query, ana);
    expect(await within(resumed.refused, 'the refusal of the resume')).toBe(503);
    expect(closed).not.toBeNull();

    // During the drain delay the holder is served as before: not closed 4001, its lock not released to the waiter.
    expect(await holder.client.request({ op: 'ping', id: 2 })).toMatchObject({ ok: true });
    const status = await waiter.client.request({ op: 'status', id: 2, key: 'k' });
    expect(status.holders).toEqual([expect.objectContaining({ session: holder.welcome.session })]);
    expect(waiter.client.inbox.filter((f) => f.id === 1)).toEqual([]);
    manual.advance(60_000);
    expect((await within(holder.client.closed, 'the holder to be closed by the shutdown')).code).toBe(1001);
    await within(closed ?? Promise.resolve(), 'close()');
  });
});
