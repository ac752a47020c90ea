import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import type { LockServer } from '../src/server.js';
import { sessionInGrace } from './resume-harness.js';
import { within, type Frame } from './server-harness.js';

const servers: LockServer[] = [];
const sockets: WebSocket[] = [];
/** Opens the store gates a failed test left shut, so its resume and server can end. */
const gates: Array<() => void> = [];
afterEach(async () => {
  for (const open of gates.splice(0)) open();
  for (const ws of sockets.splice(0)) ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** Lets every pending callback of the event loop run a few times over, so an unawaited step gets its chance. */
async function turns(count = 20): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Opens a resume of the session in grace; `status` is its upgrade's HTTP status when refused. */
function resume(url: string) {
  const ws = new WebSocket(url);
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
});
