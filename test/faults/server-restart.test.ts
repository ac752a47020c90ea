import { afterEach, describe, expect, it } from 'vitest';
import { checkHistory, formatViolations } from '../checker/check.js';
import { HistoryRecorder } from '../checker/history.js';
import { RecordingClient, type AcquireResult } from '../checker/recording-client.js';
import { startLockwireProcess, type LockwireProcess } from '../helpers/lockwire-process.js';
import { within } from './within.js';

// A memory-store server as a real process, restarted in place (same port)
// after a crash (SIGKILL) and after a drain (SIGTERM). Its locks are gone
// with it; its fencing tokens keep rising, seeded from the clock.

const tokenOf = (result: AcquireResult): number => {
  if (result.outcome !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(result)}`);
  return result.token;
};

describe('memory store: server restart', () => {
  let server: LockwireProcess | undefined;
  const clients: RecordingClient[] = [];

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.terminate()));
    await server?.kill();
    server = undefined;
  });

  it('tokens keep rising across a crash and a drain, and clients reconnect to the restarted server', async () => {
    const recorder = new HistoryRecorder();
    let live = await startLockwireProcess();
    server = live;
    const url = live.url;
    const connect = async (name: string) => {
      const client = await RecordingClient.connect(url, { recorder, name });
      clients.push(client);
      return client;
    };

    // Run 1: a holder and a waiter, then the server crashes.
    const a1 = await connect('a1');
    const b1 = await connect('b1');
    const first = tokenOf(await a1.acquire('k'));
    const waiting = b1.startAcquire('k');
    expect(await within(waiting.queued, 2000, 'b1 is queued')).toBe(true);
    await live.kill();
    await within(Promise.all([a1.closed, b1.closed]), 2000, 'both clients see the crash');
    expect(await waiting.result).toEqual({ outcome: 'unknown' });

    // Run 2, same port: the table is empty, the next token is higher, handoffs work.
    live = await startLockwireProcess({ port: live.port });
    server = live;
    const a2 = await connect('a2');
    const b2 = await connect('b2');
    const second = tokenOf(await a2.acquire('k'));
    expect(second).toBeGreaterThan(first);
    const handoff = b2.startAcquire('k');
    expect(await within(handoff.queued, 2000, 'b2 is queued')).toBe(true);
    expect(await a2.release('k')).toEqual({ outcome: 'released' });
    const third = tokenOf(await within(handoff.result, 2000, 'b2 is granted'));
    expect(third).toBeGreaterThan(second);

    // Drain: the waiter is answered shutting_down, everyone is closed, the process exits 0.
    const c2 = await connect('c2');
    const drained = c2.startAcquire('k');
    expect(await within(drained.queued, 2000, 'c2 is queued')).toBe(true);
    expect(await live.stop()).toEqual({ code: 0, signal: null });
    expect(await drained.result).toEqual({ outcome: 'failed', code: 'shutting_down' });
    await within(Promise.all([b2.closed, c2.closed]), 2000, 'the drained server closed every connection');

    // Run 3, same port again.
    live = await startLockwireProcess({ port: live.port });
    server = live;
    const a3 = await connect('a3');
    const fourth = tokenOf(await a3.acquire('k'));
    expect(fourth).toBeGreaterThan(third);

    const result = checkHistory(recorder.history());
    expect(result.ok, formatViolations(result.violations)).toBe(true);
  });
});
