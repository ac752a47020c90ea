import type { HolderInfo, ListResult, LockMode, LockStatus } from '@lockwire/protocol';
import type { LockClient } from '../lock-client.js';
import type { LockEvent, Watch } from '../watch.js';

/** One holder of a watched key, as `useLockState()` reports it. */
export interface HolderView {
  session: string;
  mode: LockMode;
  token: number;
  /** When the hold began (server epoch ms). */
  since: number;
  meta: HolderInfo['meta'];
}

/**
 * What `useLockState()` reports about one key:
 * - `loading` until the watch's snapshot arrived;
 * - `ready` with the holders (in grant order), the mode, the queue length
 *   and the last event seen (`null` until one arrives);
 * - `error` when the watch could not start or ended for good (the client
 *   closed, or re-watching after a reconnect failed); after a reconnect
 *   that re-watched, `ready` again from the fresh snapshot.
 */
export type LockStateView =
  | { status: 'loading' }
  | {
      status: 'ready';
      key: string;
      locked: boolean;
      mode: LockMode | null;
      holders: readonly HolderView[];
      waiters: number;
      lastEvent: LockEvent | null;
    }
  | { status: 'error'; error: unknown };

type Ready = Extract<LockStateView, { status: 'ready' }>;

const LOADING: LockStateView = { status: 'loading' };
const ENDS_A_HOLD: ReadonlySet<string> = new Set(['released', 'expired', 'stolen', 'revoked']);

function fromStatus(key: string, lock: LockStatus | undefined, lastEvent: LockEvent | null): Ready {
  const holders = (lock?.holders ?? []).map(({ session, mode, token, since, meta }) => ({ session, mode, token, since, meta }));
  return { status: 'ready', key, locked: holders.length > 0, mode: holders[0]?.mode ?? null, holders, waiters: lock?.queue.length ?? 0, lastEvent };
}

/**
 * The external store behind `useLockState()`: a watch on exactly one key,
 * started by the first subscriber and closed after the last one leaves.
 *
 * The server watches prefixes, so events of longer keys (`doc:42` when
 * watching `doc:4`) are dropped here. Holders are kept from the snapshot
 * and the events; when an event's counts disagree with what was kept (an
 * event this store could not place), the key's status is asked again.
 */
export class LockStateStore {
  #state: LockStateView = LOADING;
  readonly #listeners = new Set<() => void>();
  #generation = 0;
  #watch: Watch | undefined;

  constructor(
    readonly client: LockClient,
    readonly key: string,
  ) {}

  /** `useSyncExternalStore`'s subscribe: the first listener starts the watch, the last one's leaving ends it. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#start();
    return () => {
      if (!this.#listeners.delete(listener) || this.#listeners.size > 0) return;
      this.#generation++;
      void this.#watch?.close().catch(() => undefined);
      this.#watch = undefined;
    };
  };

  /** `useSyncExternalStore`'s snapshot: the same object until the state changes. */
  readonly getSnapshot = (): LockStateView => this.#state;

  #start(): void {
    const generation = ++this.#generation;
    // Events can arrive in the same read as the watch's reply: hold them until the snapshot is applied.
    let early: LockEvent[] | undefined = [];
    const onEvent = (event: LockEvent) => {
      if (event.key !== this.key || generation !== this.#generation) return;
      if (early) early.push(event);
      else this.#apply(event, generation);
    };
    // The exact key sorts first among the keys it prefixes, so one entry is enough.
    // After a reconnect the events of the time offline are gone: start again from the fresh snapshot.
    const onResync = (snapshot: ListResult) => {
      if (generation !== this.#generation) return;
      const lastEvent = this.#state.status === 'ready' ? this.#state.lastEvent : null;
      this.#set(fromStatus(this.key, snapshot.locks.find((entry) => entry.key === this.key), lastEvent));
    };
    this.client.watch(this.key, onEvent, { limit: 1, onResync }).then(
      (watch) => {
        if (generation !== this.#generation) {
          void watch.close().catch(() => undefined);
          return;
        }
        // Ended before it got here (the client closed in the same read as the reply): its signal fires no more.
        if (watch.signal.aborted) {
          this.#set({ status: 'error', error: watch.signal.reason });
          return;
        }
        this.#watch = watch;
        const lock = watch.snapshot.locks.find((entry) => entry.key === this.key);
        this.#set(fromStatus(this.key, lock, null));
        for (const event of early ?? []) this.#apply(event, generation);
        early = undefined;
        watch.signal.addEventListener(
          'abort',
          () => {
            if (generation === this.#generation) this.#set({ status: 'error', error: watch.signal.reason });
          },
          { once: true },
        );
      },
      (error: unknown) => {
        if (generation === this.#generation) this.#set({ status: 'error', error });
      },
    );
  }

  #apply(event: LockEvent, generation: number): void {
    const current = this.#state;
    if (current.status !== 'ready') return;
    let holders = current.holders;
    if (event.event === 'acquired' && event.token !== undefined) {
      holders = [...holders, { session: event.session, mode: event.mode, token: event.token, since: event.at, meta: event.meta }];
    } else if (ENDS_A_HOLD.has(event.event)) {
      holders = holders.filter((holder) => !(holder.session === event.session && holder.token === event.token));
    }
    this.#set({
      ...current,
      locked: holders.length > 0,
      mode: holders[0]?.mode ?? null,
      holders,
      waiters: event.waiters,
      lastEvent: event,
    });
    if (holders.length !== event.holders) this.#resync(event, generation);
  }

  #resync(lastEvent: LockEvent, generation: number): void {
    this.client.status(this.key).then(
      (status) => {
        if (generation === this.#generation) this.#set(fromStatus(this.key, status, lastEvent));
      },
      () => undefined,
    );
  }

  #set(state: LockStateView): void {
    this.#state = state;
    for (const listener of [...this.#listeners]) listener();
  }
}
