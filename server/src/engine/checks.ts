import { ErrorCode, MAX_DURATION_MS } from '@lockwire/protocol';
import { LockError, badRequest } from '../errors.js';
import type { Ticket } from '../store.js';
import type { SessionRecord } from './key-entry.js';

/**
 * Refuses a duration the protocol does not allow (`bad_request`): the engine
 * checks again what the wire decoder already checked, because a negative,
 * non-finite or over-long value would break the deadline heap's order.
 */
export function checkDuration(field: string, value: number | null): void {
  if (value === null) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_DURATION_MS) {
    throw badRequest(`${field}: must be null or a number of ms from 0 to ${MAX_DURATION_MS}`);
  }
}

/** Refuses a ticket this session already has pending (`bad_request`); it would shadow the first. */
export function checkTicketFree(record: SessionRecord | undefined, ticket: Ticket): void {
  if (record?.queued?.has(ticket) || record?.waits?.has(ticket)) {
    throw badRequest(`ticket ${ticket} is already pending`);
  }
}

/** The session already holds or waits for `max` keys. */
export const tooManyLocks = (max: number) =>
  new LockError(ErrorCode.TooManyLocks, `key: this session already holds or waits for ${max} locks`);

/** The key's queue already has `max` requests. */
export const tooManyWaiters = (key: string, max: number) =>
  new LockError(ErrorCode.TooManyWaiters, `key: ${max} requests already wait for ${JSON.stringify(key)}`);
