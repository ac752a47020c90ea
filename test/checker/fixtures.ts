/**
 * Terse constructors for hand-made histories in the checker's tests. Request
 * ids are chosen by the caller; times are plain milliseconds.
 */
import type { CloseKind, HistoryEvent, HistoryRequestId } from './history.js';

interface AcquireExtra {
  mode?: 'exclusive' | 'shared';
  acquireTimeout?: number | null;
  holdTimeout?: number | null;
  steal?: boolean;
}

export const acquire = (client: string, at: number, id: HistoryRequestId, key: string, extra: AcquireExtra = {}): HistoryEvent => ({
  type: 'acquire',
  client,
  at,
  id,
  key,
  mode: extra.mode ?? 'exclusive',
  acquireTimeout: extra.acquireTimeout ?? null,
  holdTimeout: extra.holdTimeout ?? null,
  steal: extra.steal ?? false,
});

export const queued = (client: string, at: number, id: HistoryRequestId, key: string): HistoryEvent => ({
  type: 'queued',
  client,
  at,
  id,
  key,
  position: 1,
});

export const granted = (client: string, at: number, id: HistoryRequestId, key: string, token: number): HistoryEvent => ({
  type: 'granted',
  client,
  at,
  id,
  key,
  token,
});

export const notGranted = (client: string, at: number, id: HistoryRequestId, key: string): HistoryEvent => ({
  type: 'not-granted',
  client,
  at,
  id,
  key,
});

export const failed = (client: string, at: number, id: HistoryRequestId, key: string, code: string): HistoryEvent => ({
  type: 'acquire-failed',
  client,
  at,
  id,
  key,
  code,
});

export const release = (client: string, at: number, id: HistoryRequestId, key: string): HistoryEvent => ({
  type: 'release',
  client,
  at,
  id,
  key,
});

export const released = (client: string, at: number, id: HistoryRequestId, key: string): HistoryEvent => ({
  type: 'released',
  client,
  at,
  id,
  key,
});

export const notHolder = (client: string, at: number, id: HistoryRequestId, key: string): HistoryEvent => ({
  type: 'release-failed',
  client,
  at,
  id,
  key,
  code: 'not_holder',
});

export const cancel = (client: string, at: number, id: HistoryRequestId, target: HistoryRequestId): HistoryEvent => ({
  type: 'cancel',
  client,
  at,
  id,
  target,
});

export const cancelReply = (client: string, at: number, id: HistoryRequestId, target: HistoryRequestId, cancelled: boolean): HistoryEvent => ({
  type: 'cancel-reply',
  client,
  at,
  id,
  target,
  cancelled,
});

export const ping = (client: string, at: number, id: HistoryRequestId): HistoryEvent => ({ type: 'ping', client, at, id });
export const pong = (client: string, at: number, id: HistoryRequestId): HistoryEvent => ({ type: 'pong', client, at, id });

export const lost = (client: string, at: number, key: string, token: number, reason: 'expired' | 'stolen' | 'revoked'): HistoryEvent => ({
  type: 'lost',
  client,
  at,
  key,
  token,
  reason,
});

export const closed = (client: string, at: number, kind: CloseKind, boundMs?: number): HistoryEvent =>
  boundMs === undefined ? { type: 'closed', client, at, kind } : { type: 'closed', client, at, kind, boundMs };

export const write = (client: string, at: number, key: string, token: number, accepted: boolean): HistoryEvent => ({
  type: 'write',
  client,
  at,
  key,
  token,
  accepted,
});

/**
 * A whole exclusive hold: acquire sent at `from - 1`, granted at `from`,
 * release sent at `to`, answered at `to + 1`. Ids are `${client}:${token}`
 * and `${client}:${token}:r`.
 */
export function hold(client: string, key: string, token: number, from: number, to: number, extra: AcquireExtra = {}): HistoryEvent[] {
  const id = `${client}:${token}`;
  return [
    acquire(client, from - 1, id, key, extra),
    granted(client, from, id, key, token),
    release(client, to, `${id}:r`, key),
    released(client, to + 1, `${id}:r`, key),
  ];
}
