/**
 * A small discrete-event model of a lock server and its clients, used to
 * generate histories for the checker's randomized tests: a correct server
 * (per-key FIFO queues, shared and exclusive holds, timeouts, hold expiry,
 * steal, cancel, disconnects) behind connections with random but ordered
 * delays, clients that write to a fenced resource while they hold a lock, and
 * optional injected server bugs whose histories the checker must reject.
 */
import { HistoryRecorder, type History } from './history.js';
import { FencedResource } from './oracle.js';
import { random } from '../helpers/seeded-random.js';

/** A server bug to inject; `none` is the correct server. */
export type SimulatedBug = 'none' | 'slow-close-release' | 'late-lost';

export interface SimulationOptions {
  seed: number;
  clients?: number;
  keys?: readonly string[];
  opsPerClient?: number;
  /** Clients may drop their connection mid-operation. Default true. */
  faults?: boolean;
  bug?: SimulatedBug;
}

export interface Simulation {
  history: History;
  /** Upper bound of one message delay, for `lostOrderSlackMs`. */
  maxDelayMs: number;
}

export { random } from '../helpers/seeded-random.js';

const CLEAN_BOUND_MS = 100;
const HALF_OPEN_DETECT_MS = 40;
const HALF_OPEN_BOUND_MS = 70;
const MAX_DELAY_MS = 8;

type Mode = 'exclusive' | 'shared';
interface Waiter { client: number; id: number; mode: Mode; holdTimeout: number | null; timer?: number }
interface Holder { mode: Mode; token: number; timer?: number }
interface KeyState { holders: Map<number, Holder>; queue: Waiter[] }

/** Runs one simulation and returns its history. */
export function simulate(options: SimulationOptions): Simulation {
  const rand = random(options.seed);
  const keys = options.keys ?? ['hot', 'warm', 'cold'];
  const clientCount = options.clients ?? 5;
  const opsPerClient = options.opsPerClient ?? 8;
  const faults = options.faults ?? true;
  const bug = options.bug ?? 'none';
  let now = 0;
  const recorder = new HistoryRecorder({ now: () => now });
  const resource = new FencedResource({ recorder });
  const agenda: { at: number; seq: number; run: () => void }[] = [];
  let seq = 0;
  let timerSeq = 0;
  const cancelledTimers = new Set<number>();
  const schedule = (delay: number, run: () => void): number => {
    const id = ++timerSeq;
    agenda.push({ at: now + delay, seq: ++seq, run: () => (cancelledTimers.has(id) ? undefined : run()) });
    return id;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
  const delay = () => (rand() < 0.05 ? 3 + rand() * (MAX_DELAY_MS - 3) : 0.05 + rand());
  const name = (client: number) => `c${client}`;

  // Ordered channels: a message never overtakes an earlier one on the same connection and direction.
  const lastArrival = new Map<string, number>();
  const send = (channel: string, run: () => void, extra = 0) => {
    const at = Math.max(now + delay() + extra, (lastArrival.get(channel) ?? 0) + 0.001);
    lastArrival.set(channel, at);
    schedule(at - now, run);
  };

  // ---- server ----
  const table = new Map<string, KeyState>();
  const serverClosed = new Set<number>();
  let tokenCounter = 0;
  const state = (key: string) => {
    let entry = table.get(key);
    if (!entry) table.set(key, (entry = { holders: new Map(), queue: [] }));
    return entry;
  };
  const toClient = (client: number, run: () => void, extra = 0) => {
    if (!serverClosed.has(client)) send(`s>${client}`, run, extra);
  };
  const grant = (key: string, w: Waiter) => {
    tokenCounter += 1 + Math.floor(rand() * 3);
    const token = tokenCounter;
    const holder: Holder = { mode: w.mode, token };
    if (w.holdTimeout !== null) holder.timer = schedule(w.holdTimeout, () => endHold(key, w.client, 'expired'));
    state(key).holders.set(w.client, holder);
    toClient(w.client, () => clients[w.client]?.onGranted(w.id, key, token));
  };
  const grantable = (entry: KeyState, mode: Mode) =>
    mode === 'exclusive' ? entry.holders.size === 0 : [...entry.holders.values()].every((h) => h.mode === 'shared');
  const processQueue = (key: string) => {
    const entry = state(key);
    for (let head = entry.queue[0]; head && grantable(entry, head.mode); head = entry.queue[0]) {
      entry.queue.shift();
      if (head.timer !== undefined) cancelledTimers.add(head.timer);
      grant(key, head);
      if (head.mode === 'exclusive') break;
    }
  };
  const endHold = (key: string, client: number, reason: 'expired' | 'stolen') => {
    const entry = state(key);
    const holder = entry.holders.get(client);
    if (!holder) return;
    entry.holders.delete(client);
    if (holder.timer !== undefined) cancelledTimers.add(holder.timer);
    const late = bug === 'late-lost' ? 20 : 0;
    toClient(client, () => clients[client]?.onLost(key, holder.token, reason), late);
    if (reason === 'expired') processQueue(key);
  };
  const server = {
    acquire(client: number, id: number, key: string, mode: Mode, acquireTimeout: number | null, holdTimeout: number | null, steal: boolean) {
      if (serverClosed.has(client)) return;
      const entry = state(key);
      const w: Waiter = { client, id, mode, holdTimeout };
      if (steal) {
        for (const other of [...entry.holders.keys()]) endHold(key, other, 'stolen');
        grant(key, w);
      } else if (entry.queue.length === 0 && grantable(entry, mode)) {
        grant(key, w);
      } else if (acquireTimeout === 0) {
        toClient(client, () => clients[client]?.onNotGranted(id));
      } else {
        entry.queue.push(w);
        toClient(client, () => clients[client]?.onQueued(id, key));
        if (acquireTimeout !== null) {
          w.timer = schedule(acquireTimeout, () => {
            entry.queue.splice(entry.queue.indexOf(w), 1);
            toClient(client, () => clients[client]?.onNotGranted(id));
            processQueue(key);
          });
        }
      }
    },
    release(client: number, id: number, key: string) {
      if (serverClosed.has(client)) return;
      const entry = state(key);
      const holder = entry.holders.get(client);
      if (!holder) return toClient(client, () => clients[client]?.onReleaseFailed(id, key));
      entry.holders.delete(client);
      if (holder.timer !== undefined) cancelledTimers.add(holder.timer);
      toClient(client, () => clients[client]?.onReleased(id, key));
      processQueue(key);
    },
    cancel(client: number, id: number, target: number) {
      if (serverClosed.has(client)) return;
      for (const [key, entry] of table) {
        const index = entry.queue.findIndex((w) => w.client === client && w.id === target);
        if (index < 0) continue;
        const [w] = entry.queue.splice(index, 1);
        if (w?.timer !== undefined) cancelledTimers.add(w.timer);
        toClient(client, () => clients[client]?.onCancelled(target));
        toClient(client, () => clients[client]?.onCancelReply(id, target, true));
        processQueue(key);
        return;
      }
      toClient(client, () => clients[client]?.onCancelReply(id, target, false));
    },
    ping(client: number, id: number) {
      toClient(client, () => clients[client]?.onPong(id));
    },
    disconnect(client: number) {
      serverClosed.add(client);
      const touched: string[] = [];
      for (const [key, entry] of table) {
        const before = entry.queue.length;
        entry.queue = entry.queue.filter((w) => {
          if (w.client === client && w.timer !== undefined) cancelledTimers.add(w.timer);
          return w.client !== client;
        });
        const holder = entry.holders.get(client);
        if (holder?.timer !== undefined) cancelledTimers.add(holder.timer);
        if (entry.holders.delete(client) || before !== entry.queue.length) touched.push(key);
      }
      const release = () => touched.forEach(processQueue);
      if (bug === 'slow-close-release') schedule(3 * CLEAN_BOUND_MS, release);
      else release();
    },
  };

  // ---- clients ----
  const clients = Array.from({ length: clientCount }, (_, index) => createClient(index));

  function createClient(index: number) {
    const client = name(index);
    let nextId = 1;
    let closed = false;
    let opsLeft = opsPerClient;
    const pending = new Set<number>();
    const acquires = new Map<number, string>();
    const held = new Map<string, number>();
    const toServer = (run: () => void) => send(`${index}>s`, run);

    const closeConnection = (kind: 'clean' | 'half-open') => {
      if (closed) return;
      closed = true;
      recorder.record({ type: 'closed', client, kind, boundMs: kind === 'clean' ? CLEAN_BOUND_MS : HALF_OPEN_BOUND_MS });
      for (const id of pending) recorder.record({ type: 'unknown', client, id });
      if (kind === 'clean') toServer(() => server.disconnect(index));
      else schedule(HALF_OPEN_DETECT_MS, () => server.disconnect(index));
    };
    const nextOp = () => {
      if (closed) return;
      if (opsLeft-- <= 0) return closeConnection('clean');
      schedule(rand() * 5, startAcquire);
    };
    const maybeFault = () => {
      if (faults && rand() < 0.04) closeConnection(rand() < 0.5 ? 'clean' : 'half-open');
      return closed;
    };
    const startAcquire = () => {
      if (closed) return;
      const id = nextId++;
      const key = pick(keys);
      const mode: Mode = rand() < 0.3 ? 'shared' : 'exclusive';
      const roll = rand();
      const acquireTimeout = roll < 0.4 ? null : roll < 0.5 ? 0 : 2 + rand() * 30;
      const holdTimeout = rand() < 0.6 ? null : 5 + rand() * 30;
      const steal = mode === 'exclusive' && acquireTimeout !== 0 && rand() < 0.05;
      pending.add(id);
      acquires.set(id, key);
      recorder.record({ type: 'acquire', client, id, key, mode, acquireTimeout, holdTimeout, steal });
      toServer(() => server.acquire(index, id, key, mode, acquireTimeout, holdTimeout, steal));
      maybeFault();
    };
    const release = (key: string) => {
      if (closed || !held.has(key)) return;
      const id = nextId++;
      pending.add(id);
      recorder.record({ type: 'release', client, id, key });
      toServer(() => server.release(index, id, key));
      maybeFault();
    };
    const ping = () => {
      if (closed) return;
      const id = nextId++;
      pending.add(id);
      recorder.record({ type: 'ping', client, id });
      toServer(() => server.ping(index, id));
    };
    const answered = (id: number) => {
      if (closed || !pending.has(id)) return false;
      pending.delete(id);
      return true;
    };
    return {
      onQueued(id: number, key: string) {
        if (closed || !pending.has(id)) return;
        recorder.record({ type: 'queued', client, id, key, position: 1 });
        if (rand() < 0.15) {
          schedule(rand() * 10, () => {
            if (closed || !pending.has(id)) return;
            const cancelId = nextId++;
            pending.add(cancelId);
            recorder.record({ type: 'cancel', client, id: cancelId, target: id });
            toServer(() => server.cancel(index, cancelId, id));
          });
        }
      },
      onGranted(id: number, key: string, token: number) {
        if (!answered(id)) return;
        recorder.record({ type: 'granted', client, id, key, token });
        held.set(key, token);
        // A paused holder keeps writing after it lost the lock; fencing must refuse it once a successor wrote.
        const paused = rand() < 0.2;
        const writes = 1 + Math.floor(rand() * 3);
        let at = 0;
        for (let i = 0; i < writes; i++) {
          at += rand() * 4;
          schedule(at, () => {
            if (!closed && (paused || held.get(key) === token)) resource.write(client, key, token);
          });
        }
        schedule(at + rand() * 2, ping);
        schedule(at + rand() * 10, () => {
          if (held.get(key) === token) release(key);
          else if (!closed) nextOp();
        });
        maybeFault();
      },
      onNotGranted(id: number) {
        if (!answered(id)) return;
        recorder.record({ type: 'not-granted', client, id, key: acquires.get(id) ?? '' });
        nextOp();
      },
      onCancelled(id: number) {
        if (!answered(id)) return;
        recorder.record({ type: 'acquire-failed', client, id, key: acquires.get(id) ?? '', code: 'cancelled' });
        nextOp();
      },
      onCancelReply(id: number, target: number, cancelled: boolean) {
        if (answered(id)) recorder.record({ type: 'cancel-reply', client, id, target, cancelled });
      },
      onReleased(id: number, key: string) {
        if (!answered(id)) return;
        recorder.record({ type: 'released', client, id, key });
        held.delete(key);
        nextOp();
      },
      onReleaseFailed(id: number, key: string) {
        if (!answered(id)) return;
        recorder.record({ type: 'release-failed', client, id, key, code: 'not_holder' });
        held.delete(key);
        nextOp();
      },
      onLost(key: string, token: number, reason: 'expired' | 'stolen') {
        if (closed) return;
        recorder.record({ type: 'lost', client, key, token, reason });
        if (held.get(key) === token) held.delete(key);
      },
      onPong(id: number) {
        if (answered(id)) recorder.record({ type: 'pong', client, id });
      },
      start: nextOp,
    };
  }

  for (const client of clients) client.start();
  while (agenda.length > 0) {
    agenda.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const next = agenda.shift();
    if (!next) break;
    now = next.at;
    next.run();
  }
  return { history: recorder.history(), maxDelayMs: MAX_DELAY_MS };
}
