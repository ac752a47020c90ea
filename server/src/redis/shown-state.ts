import type { LockStatus } from '@lockwire/protocol';
import type { LockEvent } from '../store.js';

/**
 * A hold as a watch was shown it: the `acquired` event that announced it,
 * or the holder entry of a snapshot or catch-up read (kept as they are, not
 * copied: both carry the session, token, mode and meta).
 */
export type ShownHold = Pick<LockEvent, 'session' | 'mode' | 'meta'> & { readonly token?: number };

/**
 * A queued request as a watch was shown it: its `queued` event (with the
 * arrival `seq` the step carried) or a read's queue entry (with its `seq`).
 */
export type ShownWaiter = Pick<LockEvent, 'session' | 'mode' | 'meta'> & { readonly seq?: number };

/**
 * One key as a watch was shown it: holders in grant order, the queue in
 * order. A state is never changed once made: a step makes a new one, so
 * watches that were shown the same steps hold the same object, however
 * many they are. A key nobody holds or waits for has no state (`undefined`).
 */
export interface KeyState {
  readonly holders: readonly ShownHold[];
  readonly queue: readonly ShownWaiter[];
}

/** A key's state as shown, `undefined` when nobody holds or waits for it. */
export type Shown = KeyState | undefined;

const sameHold = (a: ShownHold, b: ShownHold) => a.session === b.session && a.token === b.token;

/**
 * A session waits at most once per key, but may leave and queue again: that
 * is a new request with a new `seq`, so two waiters that both carry a seq
 * are compared by it. Without one (a step of an older node) mode and meta
 * are all there is, and miss a request that came back with the same ones.
 */
const sameWaiter = (a: ShownWaiter, b: ShownWaiter) =>
  a.session === b.session &&
  (a.seq !== undefined && b.seq !== undefined
    ? a.seq === b.seq
    : a.mode === b.mode && JSON.stringify(a.meta ?? null) === JSON.stringify(b.meta ?? null));

/** `list` without its first item matching `match` (`list` itself when none does). */
function without<T>(list: readonly T[], match: (item: T) => boolean): readonly T[] {
  const at = list.findIndex(match);
  return at < 0 ? list : [...list.slice(0, at), ...list.slice(at + 1)];
}

function stateFrom(holders: readonly ShownHold[], queue: readonly ShownWaiter[]): Shown {
  return holders.length === 0 && queue.length === 0 ? undefined : { holders, queue };
}

/**
 * The state a read shows (a snapshot's entry, or `null`: nobody holds or
 * waits). The entries are kept, the lists copied: a snapshot's lists also
 * go out in the watch's reply.
 */
export function stateOf(status: LockStatus | null): Shown {
  return status ? stateFrom([...status.holders], [...status.queue]) : undefined;
}

/** True when `a` and `b` show the same holds and the same waiters, in the same order. */
export function sameState(a: Shown, b: Shown): boolean {
  if (a === b) return true;
  if (!a || !b || a.holders.length !== b.holders.length || a.queue.length !== b.queue.length) return false;
  const sameList = <T>(x: readonly T[], y: readonly T[], same: (p: T, q: T) => boolean) =>
    x.every((item, i) => {
      const other = y[i];
      return other !== undefined && same(item, other);
    });
  return sameList(a.holders, b.holders, sameHold) && sameList(a.queue, b.queue, sameWaiter);
}

/**
 * The state after one event, as a watcher draws it: `acquired` adds a
 * holder and takes the session out of the queue (a grant of a queued
 * request has no `dequeued`), `queued` adds a waiter (with `seq`, the
 * request's arrival seq when the step carried it), `dequeued` removes
 * it, and the other events end a hold. An event that changes nothing
 * returns `state` itself.
 */
export function advance(state: Shown, event: LockEvent, seq?: number): Shown {
  const holders = state?.holders ?? [];
  const queue = state?.queue ?? [];
  switch (event.event) {
    case 'acquired':
      return stateFrom([...holders, event], without(queue, (w) => w.session === event.session));
    case 'queued': {
      const waiter: ShownWaiter = seq === undefined ? event : { session: event.session, mode: event.mode, meta: event.meta, seq };
      return stateFrom(holders, [...queue, waiter]);
    }
    case 'dequeued': {
      const left = without(queue, (w) => w.session === event.session);
      return left === queue ? state : stateFrom(holders, left);
    }
    default: {
      const left = without(holders, (h) => sameHold(h, event));
      return left === holders ? state : stateFrom(left, queue);
    }
  }
}

/**
 * The events that take a watcher from `shown` to `now` (read just now), in
 * this order: `released` for each hold that ended (how it ended is not
 * known: it may have expired, been stolen or revoked), `dequeued` for each
 * waiter gone without a grant, `acquired` for each new hold in grant order
 * (a granted waiter leaves the queue with it, as on a live grant), `queued`
 * for each new waiter in queue order. `holders`/`waiters` are the counts
 * right after each event's own change; `at` stamps them all.
 */
export function catchUpEvents(key: string, shown: Shown, now: Shown, at: number): LockEvent[] {
  const nowHolders = now?.holders ?? [];
  const nowQueue = now?.queue ?? [];
  const holders = [...(shown?.holders ?? [])];
  const queue = [...(shown?.queue ?? [])];
  const events: LockEvent[] = [];
  const tell = (event: LockEvent['event'], about: ShownHold) => {
    const told: LockEvent = {
      key,
      event,
      session: about.session,
      mode: about.mode,
      meta: about.meta ?? null,
      holders: holders.length,
      waiters: queue.length,
      at,
    };
    if (about.token !== undefined && event !== 'queued' && event !== 'dequeued') told.token = about.token;
    events.push(told);
  };
  const drop = <T>(list: T[], item: T) => list.splice(list.indexOf(item), 1);
  const granted = nowHolders.filter((h) => !holders.some((s) => sameHold(s, h)));
  for (const hold of [...holders]) {
    if (nowHolders.some((h) => sameHold(h, hold))) continue;
    drop(holders, hold);
    tell('released', hold);
  }
  for (const waiter of [...queue]) {
    // A waiter granted meanwhile leaves the queue with its `acquired`, as a live grant does.
    if (nowQueue.some((w) => sameWaiter(w, waiter)) || granted.some((h) => h.session === waiter.session)) continue;
    drop(queue, waiter);
    tell('dequeued', waiter);
  }
  for (const hold of granted) {
    holders.push(hold);
    const at = queue.findIndex((w) => w.session === hold.session);
    if (at >= 0) queue.splice(at, 1);
    tell('acquired', hold);
  }
  for (const waiter of nowQueue) {
    if (queue.some((w) => sameWaiter(w, waiter))) continue;
    queue.push(waiter);
    tell('queued', waiter);
  }
  return events;
}

/**
 * One event's step, worked out once per distinct state before it: every
 * watch that was shown the same state gets the same next state object, so
 * N watches that agree cost one new state. Lives for one dispatch.
 */
export class StepOnce {
  readonly #event: LockEvent;
  readonly #seq: number | undefined;
  #first: { from: Shown; to: Shown } | null = null;
  #more: Map<Shown, Shown> | null = null;

  /** `seq`: a `queued` event's arrival seq, when its step carried it. */
  constructor(event: LockEvent, seq?: number) {
    this.#event = event;
    this.#seq = seq;
  }

  /** The state after this event for a watch that was shown `from`. */
  from(from: Shown): Shown {
    if (!this.#first) {
      const to = advance(from, this.#event, this.#seq);
      this.#first = { from, to };
      return to;
    }
    if (this.#first.from === from) return this.#first.to;
    this.#more ??= new Map();
    if (this.#more.has(from)) return this.#more.get(from);
    const to = advance(from, this.#event, this.#seq);
    this.#more.set(from, to);
    return to;
  }
}
