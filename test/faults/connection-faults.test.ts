import { afterEach, describe, expect, it } from 'vitest';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import { checkHistory, formatViolations } from '../checker/check.js';
import { HistoryRecorder, handoffGuardMs } from '../checker/history.js';
import { random } from '../checker/simulation.js';
import { RecordingClient } from '../checker/recording-client.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { ClientProcess } from './client-process.js';
import { until, within } from './within.js';

// Connection faults against a memory-store server in this process: a path
// that goes silent, a client that stops reading, and many clients dropping
// at once.

const HEARTBEAT_MS = 100;
/** Request/reply round trips the other clients must complete while a client is stopped. */
const ROUND_TRIPS = 20;

/** Counts completions; `reach(n)` resolves once `n` are done, and rejects on `fail`. */
function counter() {
  let count = 0;
  let failure: Error | undefined;
  const waiting = new Set<{ target: number; resolve: () => void; reject: (error: Error) => void }>();
  return {
    get count() {
      return count;
    },
    add() {
      count++;
      for (const w of [...waiting]) {
        if (count >= w.target) {
          waiting.delete(w);
          w.resolve();
        }
      }
    },
    fail(error: Error) {
      failure = error;
      for (const w of waiting) w.reject(error);
      waiting.clear();
    },
    reach(target: number): Promise<void> {
      if (failure) return Promise.reject(failure);
      if (count >= target) return Promise.resolve();
      return new Promise((resolve, reject) => waiting.add({ target, resolve, reject }));
    },
  };
}

describe('memory store: connection faults', () => {
  let server: LockServer | undefined;
  let proxy: TcpProxy | undefined;
  const processes: ClientProcess[] = [];
  const clients: RecordingClient[] = [];

  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await Promise.all(clients.splice(0).map((c) => c.terminate()));
    await proxy?.close();
    await server?.close();
    proxy = undefined;
    server = undefined;
  });

  const expectValid = (recorder: HistoryRecorder, options: Parameters<typeof checkHistory>[1] = {}) => {
    const result = checkHistory(recorder.history(), options);
    expect(result.ok, formatViolations(result.violations)).toBe(true);
  };

  // The heartbeat runs on real time by design (it judges nobody while the
  // server itself stalls), so it cannot take a manual clock: these tests
  // assert the order of pings, round trips and the cut, and time only bounds
  // the waits against a hang.

  it('a half-open connection is cut by the heartbeat only after a ping it left unanswered, and its lock goes to the next waiter', async () => {
    const live = await createLockServer({ port: 0, heartbeatInterval: HEARTBEAT_MS });
    server = live;
    const silent = await startTcpProxy({ targetPort: live.port });
    proxy = silent;
    const recorder = new HistoryRecorder();
    const holder = await RecordingClient.connect(`ws://127.0.0.1:${silent.port}/v1`, { recorder, name: 'holder' });
    const waiter = await RecordingClient.connect(live.url, { recorder, name: 'waiter' });
    clients.push(holder, waiter);
    const held = await holder.acquire('k');
    expect(held).toMatchObject({ outcome: 'granted' });
    const next = waiter.startAcquire('k');
    expect(await within(next.queued, 5000, 'the waiter is queued')).toBe(true);

    // Every heartbeat pings every live connection: the waiter's pings count the server's ticks.
    const waiterPings: number[] = [];
    waiter.onHeartbeatPing((at) => waiterPings.push(at));
    let grantedAt = Infinity;
    void next.result.then(() => (grantedAt = recorder.now()));
    // The path goes silent as a ping reaches the holder: its pong, already
    // written, waits in the proxy, so the server hears nothing after that ping.
    const silenced = new Promise<number>((resolve) => {
      holder.onHeartbeatPing((at) => {
        if (silent.mode !== 'forward') return;
        silent.hold();
        recorder.record({ type: 'closed', client: 'holder', kind: 'half-open', boundMs: handoffGuardMs(2 * HEARTBEAT_MS) });
        resolve(at);
      });
    });
    const silencedAt = await within(silenced, 5000, 'a heartbeat ping reaches the holder');
    const granted = await within(next.result, 10_000, 'the waiter is granted');

    expect(granted).toMatchObject({ outcome: 'granted' });
    // The server judged the unanswered ping only on a later heartbeat: the
    // waiter saw that heartbeat's ping (sent before the cut, on the same
    // socket as the grant) between the silence and its grant.
    expect(waiterPings.filter((at) => at > silencedAt && at < grantedAt).length).toBeGreaterThanOrEqual(1);
    // The server cut its side; once the path carries again, the holder sees the close too.
    silent.resume();
    await within(holder.closed, 5000, 'the holder sees its connection closed');
    expectValid(recorder);
  });

  // Its steps wait for heartbeats on the real clock (a second apart) under a flood: each wait's own bound guards against a hang, and the test's bound is their sum.
  it('a client that stops reading is cut by the heartbeat, and until then the other clients keep completing their round trips', async () => {
    const heartbeat = 1000;
    // The flooding and probing clients send as fast as they are answered: no
    // frame rate limit here. Nor a buffer limit: the stopped reader's events
    // pile up past the default 4 MiB within an interval on a fast machine,
    // and the slow-reader cut would come before the heartbeat's.
    const unlimited = { rateLimit: 1_000_000, rateBurst: 1_000_000, maxBufferedBytes: 1024 ** 3 };
    const live = await createLockServer({ port: 0, heartbeatInterval: heartbeat, limits: unlimited });
    server = live;
    const recorder = new HistoryRecorder();
    const slow = await ClientProcess.start({ url: live.url, name: 'slow', recorder });
    processes.push(slow);
    slow.watch('');
    slow.acquire({ key: 'held-by-slow' });
    await within(slow.next((e) => e.type === 'granted'), 5000, 'the slow client holds its key');
    const [waiter, busy1, busy2, prober] = await Promise.all(
      ['waiter', 'busy1', 'busy2', 'prober'].map((name) => RecordingClient.connect(live.url, { recorder, name })),
    );
    if (!waiter || !busy1 || !busy2 || !prober) throw new Error('clients');
    clients.push(waiter, busy1, busy2, prober);
    const next = waiter.startAcquire('held-by-slow');
    expect(await within(next.queued, 5000, 'the waiter is queued')).toBe(true);
    let cut = false;
    void next.result.then(() => (cut = true));

    // Two clients flood the watched prefix with events; a third pings in a loop.
    let flooding = true;
    const cycles = counter();
    const roundTrips = counter();
    // Events of about 1 KB each, from several keys at once: the stopped
    // reader's socket buffers fill within the heartbeat interval.
    const meta = { pad: 'x'.repeat(900) };
    const flood = async (client: RecordingClient, key: string) => {
      while (flooding) {
        const result = await client.acquire(key, { meta });
        if (result.outcome !== 'granted') return;
        await client.release(key);
        cycles.add();
      }
    };
    const floods = Array.from({ length: 4 }, (_, i) => [flood(busy1, `flood:1:${i}`), flood(busy2, `flood:2:${i}`)]).flat();
    const probing = (async () => {
      while (flooding) {
        if (!(await prober.ping())) {
          roundTrips.fail(new Error('the server closed the probing client, which kept reading and answering'));
          return;
        }
        roundTrips.add();
      }
    })();
    await within(Promise.all([cycles.reach(ROUND_TRIPS), roundTrips.reach(ROUND_TRIPS)]), 10_000, 'the flood runs');

    // Stop the slow client just after it answered a heartbeat: once the
    // prober has a tick's ping, the slow client's grant of a fresh key comes
    // after that tick's ping on its socket, so its pong is sent first. The
    // server then pings it once more unanswered before judging: it stays
    // stopped and not yet cut for at least a heartbeat interval.
    const tick = new Promise<void>((resolve) => prober.onHeartbeatPing(() => resolve()));
    await within(tick, 5000, 'a heartbeat ping reaches the prober');
    slow.acquire({ key: 'answered-the-heartbeat' });
    await within(
      slow.next((e) => e.type === 'granted' && e.key === 'answered-the-heartbeat'),
      5000,
      'the slow client answers after the heartbeat ping',
    );
    recorder.record({ type: 'closed', client: 'slow', kind: 'half-open', boundMs: handoffGuardMs(2 * heartbeat) });
    slow.pause();
    // The next heartbeat pings the stopped client (which stays unanswered)
    // and cuts nobody; by then its socket has taken an interval of the flood.
    const nextTick = new Promise<void>((resolve) => prober.onHeartbeatPing(() => resolve()));
    await within(nextTick, 10_000, 'the next heartbeat ping reaches the prober');
    expect(cut).toBe(false);
    const [cyclesAtStop, roundTripsAtStop] = [cycles.count, roundTrips.count];

    // The server never waits on the stopped reader: the others' requests are
    // answered while its events pile up, before the heartbeat cuts it.
    await within(
      Promise.all([cycles.reach(cyclesAtStop + ROUND_TRIPS), roundTrips.reach(roundTripsAtStop + ROUND_TRIPS)]),
      10_000,
      `${ROUND_TRIPS} round trips of the other clients while the slow client is stopped`,
    );
    expect(cut).toBe(false);
    const granted = await within(next.result, 10_000, 'the slow client is cut and its key granted');
    flooding = false;
    await Promise.all([...floods, probing]);
    slow.cont();

    expect(granted).toMatchObject({ outcome: 'granted' });
    expectValid(recorder);
  }, 60_000);

  it('fifty clients dropping at once and reconnecting leave no lock or waiter behind, round after round', async () => {
    const clock = createManualClock();
    const live = await createLockServer({ port: 0, clock, heartbeatInterval: 0 });
    server = live;
    const recorder = new HistoryRecorder();
    const rand = random(7);
    const keys = ['hot:a', 'hot:b', 'hot:c', 'hot:d', 'hot:e'];
    let grants = 0;

    for (let round = 0; round < 3; round++) {
      const group = await Promise.all(
        Array.from({ length: 50 }, (_, i) => RecordingClient.connect(live.url, { recorder, name: `r${round}c${i}` })),
      );
      clients.push(...group);
      const target = grants + 300;
      let reached: () => void = () => {};
      const enough = new Promise<void>((resolve) => (reached = resolve));
      const work = async (client: RecordingClient) => {
        for (;;) {
          const key = keys[Math.floor(rand() * keys.length)] ?? 'hot:a';
          const mode = rand() < 0.2 ? 'shared' : 'exclusive';
          const result = await client.acquire(key, { mode });
          if (result.outcome !== 'granted') return;
          if (++grants >= target) reached();
          if ((await client.release(key)).outcome !== 'released') return;
        }
      };
      const workers = group.map(work);
      await within(enough, 10_000, `round ${round} reaches ${target} grants`);

      // Every connection of the round is dropped in the same instant, mid-acquire or holding.
      await Promise.all(group.map((client) => client.terminate()));
      await Promise.all(workers);
      await until(
        async () => {
          const { locks } = (await fetch(`${live.httpUrl}/v1/locks`).then((r) => r.json())) as { locks: unknown[] };
          return locks.length === 0 && live.sessionCount() === 0 ? true : undefined;
        },
        2000,
        `round ${round}: every lock and waiter gone`,
      );
    }
    expect(grants).toBeGreaterThanOrEqual(900);
    expectValid(recorder, { fifo: true });
  });
});
