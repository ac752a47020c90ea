import type { LockStatus } from '@lockwire/protocol';
import type { LockEvent } from '../store.js';

/**
 * A hold as watchers were shown it: the `acquired` event that announced it,
 * or the holder entry of a snapshot or catch-up read (kept as they are, not
 * copied: both carry the session, token, mode and meta).
 */
export type ShownHold = Pick<LockEvent, 'session' | 'mode' | 'meta'> & { readonly token?: number };

/** A queued request as watchers were shown it: its `queued` event or a read's queue entry. */
export type ShownWaiter = Pick<LockEvent, 'session' | 'mode' | 'meta'>;

/** One key as watchers were shown it: holders in grant order, the queue in order. */
interface KeyView {
  holders: ShownHold[];
  queue: ShownWaiter[];
}

const sameHold = (a: ShownHold, b: ShownHold) => a.session === b.session && a.token === b.token;

/** A session waits at most once per key; mode and meta tell a request that left and came back apart. */
const sameWaiter = (a: ShownWaiter, b: ShownWaiter) =>
  a.session === b.session && a.mode === b.mode && JSON.stringify(a.meta ?? null) === JSON.stringify(b.meta ?? null);

function removeFirst<T>(list: T[], match: (item: T) => boolean): boolean {
  const at = list.findIndex(match);
  if (at < 0) return false;
  list.splice(at, 1);
  return true;
}

/**
 * What this node's watchers have been shown, per key they cover: built from
 * the watch snapshots and moved on by every event they were handed. When the
 * node may have missed steps (its pub/sub connection broke, or a broadcast
 * was lost), a fresh read of a key is compared with this to find the events
 * that bring the watchers to the key's state (`catchUp`).
 *
 * Only keys with a holder or a waiter have an entry, and the entries reuse
 * the event and read objects, so the cost is a few references per hold and
 * queued request under a watched prefix, and nothing without a watch.
 */
export class WatchMirror {
  readonly #keys = new Map<string, KeyView>();

  /** Keys with an entry (a holder or a waiter shown). */
  keys(): IterableIterator<string> {
    return this.#keys.keys();
  }

  /**
   * Moves a key on by one event its watchers were handed, as a watcher
   * draws it: `acquired` adds a holder and takes the session out of the
   * queue (a grant of a queued request has no `dequeued`), `queued` adds a
   * waiter, `dequeued` removes it, and the other events end a hold.
   */
  apply(event: LockEvent): void {
    let view = this.#keys.get(event.key);
    switch (event.event) {
      case 'acquired':
        if (!view) this.#keys.set(event.key, (view = { holders: [], queue: [] }));
        view.holders.push(event);
        removeFirst(view.queue, (w) => w.session === event.session);
        break;
      case 'queued':
        if (!view) this.#keys.set(event.key, (view = { holders: [], queue: [] }));
        view.queue.push(event);
        break;
      case 'dequeued':
        if (view) removeFirst(view.queue, (w) => w.session === event.session);
        break;
      default:
        if (view) removeFirst(view.holders, (h) => sameHold(h, event));
    }
    if (view && view.holders.length === 0 && view.queue.length === 0) this.#keys.delete(event.key);
  }

  /**
   * Sets a key to what a read shows (a snapshot's entry, or `null`: nobody
   * holds or waits). The entries are kept, the lists copied: a snapshot's
   * lists also go out in the watch's reply, and events change these.
   */
  learn(key: string, status: LockStatus | null): void {
    if (!status || (status.holders.length === 0 && status.queue.length === 0)) this.#keys.delete(key);
    else this.#keys.set(key, { holders: [...status.holders], queue: [...status.queue] });
  }

  /**
   * The events that take watchers from what they were shown of `key` to
   * `status` (read just now; `null` for nothing held or queued), in this
   * order: `released` for each hold that ended (how it ended is not known:
   * it may have expired, been stolen or revoked), `dequeued` for each waiter
   * gone without a grant, `acquired` for each new hold in grant order (a
   * granted waiter leaves the queue with it, as on a live grant), `queued`
   * for each new waiter in queue order. `holders`/`waiters` are the counts
   * right after each event's own change. The key then shows `status`.
   */
  catchUp(key: string, status: LockStatus | null, at: number): LockEvent[] {
    const shown = this.#keys.get(key);
    const nowHolders: ShownHold[] = status?.holders ?? [];
    const nowQueue: ShownWaiter[] = status?.queue ?? [];
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
    const granted = nowHolders.filter((h) => !holders.some((s) => sameHold(s, h)));
    for (const hold of [...holders]) {
      if (nowHolders.some((h) => sameHold(h, hold))) continue;
      removeFirst(holders, (h) => h === hold);
      tell('released', hold);
    }
    for (const waiter of [...queue]) {
      // A waiter granted meanwhile leaves the queue with its `acquired`, as a live grant does.
      if (nowQueue.some((w) => sameWaiter(w, waiter)) || granted.some((h) => h.session === waiter.session)) continue;
      removeFirst(queue, (w) => w === waiter);
      tell('dequeued', waiter);
    }
    for (const hold of granted) {
      holders.push(hold);
      removeFirst(queue, (w) => w.session === hold.session);
      tell('acquired', hold);
    }
    for (const waiter of nowQueue) {
      if (queue.some((w) => sameWaiter(w, waiter))) continue;
      queue.push(waiter);
      tell('queued', waiter);
    }
    this.learn(key, status);
    return events;
  }

  /** Forgets the keys no watch covers any more. */
  prune(covered: (key: string) => boolean): void {
    for (const key of this.#keys.keys()) if (!covered(key)) this.#keys.delete(key);
  }

  /** Forgets everything (the last watch ended). */
  clear(): void {
    this.#keys.clear();
  }
}
