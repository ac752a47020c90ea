import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useSyncExternalStore,
  type ReactNode,
} from 'react';
import type { LockClient } from '../lock-client.js';
import type { LockHookState, LockRequest } from './lock-controller.js';
import { SharedLocks } from './shared-lock.js';
import { LockStateStore, type LockStateView } from './lock-state-store.js';

const LockClientContext = createContext<LockClient | null>(null);

/**
 * Each client's shared lock requests. Keyed weakly by the client, so they
 * go with it; per client because the session is the holder, whichever
 * component asked.
 */
const sharedByClient = new WeakMap<LockClient, SharedLocks>();

function sharedLocks(client: LockClient): SharedLocks {
  let shared = sharedByClient.get(client);
  if (!shared) {
    shared = new SharedLocks(client);
    sharedByClient.set(client, shared);
  }
  return shared;
}

/** Props of {@link LockClientProvider}. */
export interface LockClientProviderProps {
  /** A connected client; every hook below uses it unless given its own `client`. */
  client: LockClient;
  children?: ReactNode;
}

/**
 * Makes `client` the lockwire client of the hooks below it. The provider
 * neither connects nor closes the client: its owner does both. Nest
 * providers to give parts of a page their own connection (each connection is
 * its own lock holder).
 */
export function LockClientProvider(props: LockClientProviderProps): ReactNode {
  return createElement(LockClientContext.Provider, { value: props.client }, props.children);
}

/**
 * The client a hook uses: `given` when passed, else the nearest
 * {@link LockClientProvider}'s.
 *
 * @throws Error when there is neither.
 */
export function useLockClient(given?: LockClient): LockClient {
  const fromContext = useContext(LockClientContext);
  const client = given ?? fromContext;
  if (!client) throw new Error('no lockwire client: pass { client } or render inside <LockClientProvider client={...}>');
  return client;
}

/** Options of {@link useLock}: the acquire options, plus where the client comes from and when to acquire. */
export interface UseLockOptions extends LockRequest {
  /** The client to hold the lock on. Default: the nearest `LockClientProvider`'s. */
  client?: LockClient;
  /** Acquire on mount (default `true`); `false` waits for `acquire()`. */
  auto?: boolean;
}

/** What {@link useLock} returns: the state, and the two actions. */
export type UseLockResult = LockHookState & {
  /** Starts acquiring (no-op while waiting or holding). */
  acquire(): void;
  /**
   * Cancels the request or releases the lock; the state turns `idle` at
   * once. Resolves once the hold is gone: the release accepted or the lock
   * lost (a waiting request: once it is given up, and a grant that raced its
   * cancel handed back). A release the server
   * refuses (`rate_limited`, `store_unavailable`, ...) is sent again with
   * backoff until it is accepted or the lock is lost, and this resolves
   * only then; meanwhile the key's next acquire on the client (`useLock`,
   * `acquire`, `withLock`, `acquireLock`, a Web Lock request) waits for it,
   * so it gets a hold of its own. When other components on the client
   * still use the key, resolves at once and the hold stays. Never rejects.
   */
  release(): Promise<void>;
};

/**
 * Holds the lock `key` while the component is mounted (or between
 * `acquire()` and `release()` with `auto: false`), and re-renders as its
 * state moves: `idle` -> `waiting` (with `position`) -> `held` (with the
 * lease and its fencing token) -> `lost` (with the reason) when taken away.
 * A request waiting in line when the connection drops stays `waiting`
 * (`position: null`) while the client reconnects, and is sent again once
 * it is open, at the tail of the line and with what is left of
 * `acquireTimeout`; it turns `error` if the client closes for good first.
 * Unmounting cancels the request or releases the lock. A hold the client
 * had before (`acquire()`, `withLock`, `acquireLock`) is shown as `held`
 * but left to its holder, and a lease released by anyone else
 * (`lease.release()`, `client.releaseLock(key)`, that holder) turns the
 * state `idle` until `acquire()` is called again.
 *
 * The session is the holder: components on the same client share one
 * request and one hold of a key (one `waiting` position, one lease and
 * token); the hold ends when the last of them releases or unmounts, and a
 * loss reaches all of them. Give independent holders their own clients.
 * Options other than `client` and `auto` are read when an acquire starts
 * (when components share it, those of the one that joined last); changing
 * `key` or the client releases and starts over, changing `auto` does not
 * (turned on, it asks when nothing is held or asked yet).
 */
export function useLock(key: string, options: UseLockOptions = {}): UseLockResult {
  const { client: given, auto = true, ...request } = options;
  const client = useLockClient(given);
  const latest = useRef<LockRequest>(request);
  latest.current = request;
  const controller = useMemo(() => sharedLocks(client).handle(key, () => latest.current), [client, key]);
  const state = useSyncExternalStore(controller.subscribe, controller.getSnapshot, controller.getSnapshot);
  // Released on unmount or a new key/client only; `auto` only starts an acquire.
  useEffect(
    () => () => {
      void controller.release();
    },
    [controller],
  );
  useEffect(() => {
    if (auto) controller.acquire();
  }, [controller, auto]);
  return useMemo(
    () => ({ ...state, acquire: controller.acquire, release: controller.release }),
    [state, controller],
  );
}

/**
 * Watches one key: who holds it (session, mode, token, meta, since), how
 * many wait, and the last event, live from the server's pushed events.
 * `loading` until the first snapshot; `error` if the watch cannot start or
 * its connection ends. Events of other keys under the same prefix are
 * ignored. Each hook sends its own `watch` (the server keeps one per prefix
 * and session, so hooks on one client share it on the wire).
 */
export function useLockState(key: string, options: { client?: LockClient } = {}): LockStateView {
  const client = useLockClient(options.client);
  const store = useMemo(() => new LockStateStore(client, key), [client, key]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}
