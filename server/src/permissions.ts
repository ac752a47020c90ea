import {
  ErrorCode,
  MAX_LIST_LIMIT,
  type ClientMessage,
  type ListResult,
  type LockStatus,
  type WireError,
} from '@lockwire/protocol';
import type { LockEvent } from './store.js';

/**
 * Key patterns: an exact key, or a prefix followed by `*` (`doc:*` matches
 * every key starting with `doc:`, `*` matches every key). A key that itself
 * ends in `*` can only be granted through a shorter prefix pattern.
 */
export type KeyPattern = string;

/** What one session may do, from its credentials (or everything, with auth off). */
export interface Permissions {
  /** The credentials' `sub`, shown as `welcome.user`; null with auth off or without `sub`. */
  readonly user: string | null;
  /** May acquire, release, extend and wait on these keys. */
  readonly locks: readonly KeyPattern[];
  /**
   * May status, list and watch these keys; list results and events are
   * filtered to them. A `status` of a key the session holds is answered
   * outside them too (see `refusal` and `statusRefusal`).
   */
  readonly watch: readonly KeyPattern[];
  /** May acquire these keys with `steal: true` (`locks` is needed too). */
  readonly steal: readonly KeyPattern[];
  /** May revoke these keys. */
  readonly admin: readonly KeyPattern[];
  /** Epoch ms at which the credentials expire; null when they never do. */
  readonly expiresAt: number | null;
}

/** The permissions of every session when auth is off: everything, forever. */
export const ALLOW_ALL: Permissions = {
  user: null,
  locks: ['*'],
  watch: ['*'],
  steal: ['*'],
  admin: ['*'],
  expiresAt: null,
};

/**
 * True when these permissions allow every request on every key (auth off, or
 * credentials with `*` everywhere): the session then skips the per-frame and
 * per-event pattern checks, whose answer is known.
 */
export function allowsEverything(permissions: Permissions): boolean {
  const everything = (patterns: readonly KeyPattern[]) => patterns.includes('*');
  return (
    everything(permissions.locks) &&
    everything(permissions.watch) &&
    everything(permissions.steal) &&
    everything(permissions.admin)
  );
}

/** True when `key` matches one of `patterns`. */
export function allows(patterns: readonly KeyPattern[], key: string): boolean {
  for (const pattern of patterns) {
    if (pattern.endsWith('*') ? key.startsWith(pattern.slice(0, -1)) : key === pattern) return true;
  }
  return false;
}

/** True when every key starting with `prefix` matches one of `patterns`. */
export function allowsPrefix(patterns: readonly KeyPattern[], prefix: string): boolean {
  return patterns.some((pattern) => pattern.endsWith('*') && prefix.startsWith(pattern.slice(0, -1)));
}

const NOTHING_HELD: ReadonlySet<string> = new Set();

function forbidden(what: string, key: string): WireError {
  return { code: ErrorCode.Forbidden, message: `key: these credentials may not ${what} ${JSON.stringify(key)}` };
}

/**
 * The `forbidden` error a request is refused with, or null when the
 * permissions allow it. `list` and `watch` are always allowed: their results
 * are filtered instead. `cancel`, `unwatch` and `ping` touch only the
 * session's own state. A `release` of a key the session holds (in `held`) is
 * always allowed: giving a lock up is never forbidden, e.g. one a resume
 * handed back under credentials that no longer cover it.
 *
 * A `status` outside `watch` passes here when the session holds the key or
 * may lock it: whether it holds the key is known only once the read has run
 * after the session's earlier requests (an acquire or a release sent right
 * before it), so `statusRefusal` decides on the read's result. One of a key
 * the session neither holds nor may lock is refused here: it cannot come to
 * hold it before the read.
 */
export function refusal(
  permissions: Permissions,
  message: ClientMessage,
  held: ReadonlySet<string> = NOTHING_HELD,
): WireError | null {
  switch (message.op) {
    case 'acquire':
      if (!allows(permissions.locks, message.key)) return forbidden('lock', message.key);
      if (message.steal === true && !allows(permissions.steal, message.key)) return forbidden('steal', message.key);
      return null;
    case 'release':
      return allows(permissions.locks, message.key) || held.has(message.key) ? null : forbidden('lock', message.key);
    case 'extend':
    case 'wait':
      return allows(permissions.locks, message.key) ? null : forbidden('lock', message.key);
    case 'status':
      return allows(permissions.watch, message.key) ||
        allows(permissions.locks, message.key) ||
        held.has(message.key)
        ? null
        : forbidden('see', message.key);
    case 'revoke':
      return allows(permissions.admin, message.key) ? null : forbidden('revoke', message.key);
    case 'list':
    case 'watch':
    case 'cancel':
    case 'unwatch':
    case 'ping':
      return null;
  }
}

/**
 * The `forbidden` error a `status` of `key` is answered with instead of
 * `status`, its read (taken as the viewing session, after that session's
 * earlier requests), or null to answer the read. A key inside `watch` is
 * always answered. Outside it, a holder (in any mode) may see who shares the key
 * with it and who waits behind it (a Web Locks client asks before it lets a
 * second shared request of its own share its hold), so the read is answered
 * only when it says the session holds the key: right behind the session's
 * own granted acquire it is, right behind its release, or once the lock is
 * lost, it is not. Only queued for the key is not holding it.
 */
export function statusRefusal(permissions: Permissions, key: string, status: LockStatus): WireError | null {
  if (allows(permissions.watch, key) || status.heldByYou === true) return null;
  return forbidden('see', key);
}

/** True when a watcher with these permissions may see the event. */
export function maySee(permissions: Permissions, event: LockEvent): boolean {
  return allows(permissions.watch, event.key);
}

/**
 * The `limit` a `watch` of `prefix` asks the store's snapshot for: `limit`
 * itself when every key under the prefix may be seen; else the most a list
 * may hold (`MAX_LIST_LIMIT`), so that hidden keys, which the store counts,
 * do not push visible ones out before `watchSnapshot` filters them.
 */
export function watchStoreLimit(permissions: Permissions, prefix: string, limit: number): number {
  return allowsPrefix(permissions.watch, prefix) ? limit : Math.max(limit, MAX_LIST_LIMIT);
}

/**
 * A watch's snapshot as the client gets it: the store's snapshot (taken with
 * `watchStoreLimit`) without the keys these permissions may not see, then
 * cut at `limit`, as `list` gives it. `truncated` when visible locks were
 * cut, or when the store's own snapshot was cut (visible locks may lie
 * beyond it).
 */
export function watchSnapshot(permissions: Permissions, snapshot: ListResult, limit: number): ListResult {
  if (allowsPrefix(permissions.watch, '')) return snapshot;
  const visible = snapshot.locks.filter((lock) => allows(permissions.watch, lock.key));
  return { locks: visible.slice(0, limit), truncated: snapshot.truncated || visible.length > limit };
}

/**
 * `list` under permissions, exact even when `prefix` is wider than what may
 * be seen: a prefix inside one `*` pattern is listed as is; otherwise the
 * result is merged from a list of every narrower prefix pattern and a status
 * of every exact key under `prefix`, then cut at `limit`.
 */
export async function listVisible(
  permissions: Permissions,
  prefix: string,
  limit: number,
  read: {
    list(prefix: string, limit: number): Promise<ListResult>;
    status(key: string): Promise<ListResult['locks'][number]>;
  },
): Promise<ListResult> {
  if (allowsPrefix(permissions.watch, prefix)) return read.list(prefix, limit);
  const parts: Array<Promise<ListResult>> = [];
  for (const pattern of new Set(permissions.watch)) {
    if (pattern.endsWith('*')) {
      const narrower = pattern.slice(0, -1);
      if (narrower.startsWith(prefix)) parts.push(read.list(narrower, limit));
    } else if (pattern.startsWith(prefix)) {
      parts.push(read.status(pattern).then((status) => ({ locks: status.locked ? [status] : [], truncated: false })));
    }
  }
  const byKey = new Map<string, ListResult['locks'][number]>();
  let truncated = false;
  for (const part of await Promise.all(parts)) {
    truncated ||= part.truncated;
    for (const lock of part.locks) byKey.set(lock.key, lock);
  }
  const keys = [...byKey.keys()].sort();
  const locks = keys.slice(0, limit).flatMap((key) => byKey.get(key) ?? []);
  return { locks, truncated: truncated || keys.length > limit };
}
