import * as z from 'zod/mini';
import { requestIdSchema, modeSchema } from './client-messages.js';

const tokenSchema = z.int().check(z.minimum(1), z.maximum(Number.MAX_SAFE_INTEGER));
const epochMsSchema = z.number();
/**
 * A holder's or waiter's `meta` as the server sent it: kept as parsed, not
 * rebuilt (a record schema would drop a `__proto__` key, which the protocol
 * allows as an ordinary field).
 */
const metaOutSchema = z.nullable(
  z.custom<Record<string, unknown>>((value) => typeof value === 'object' && value !== null && !Array.isArray(value), {
    error: 'expected a JSON object',
  }),
);

export const errorCodeSchema = z.enum([
  'bad_request',
  'duplicate_id',
  'not_holder',
  'cancelled',
  'too_many_locks',
  'too_many_waiters',
  'rate_limited',
  'unauthorized',
  'forbidden',
  'shutting_down',
  'store_unavailable',
  'internal',
]);

export const wireErrorSchema = z.object({
  code: errorCodeSchema,
  message: z.string(),
});
export type WireError = z.infer<typeof wireErrorSchema>;

export const limitsSchema = z.looseObject({
  maxPayload: z.number(),
  maxKeyLength: z.number(),
  maxLocksPerSession: z.number(),
  maxWaitersPerKey: z.number(),
});
export type Limits = z.infer<typeof limitsSchema>;

export const heldLockSchema = z.object({
  key: z.string(),
  mode: modeSchema,
  token: tokenSchema,
  expiresAt: z.nullable(epochMsSchema),
});
export type HeldLock = z.infer<typeof heldLockSchema>;

export const welcomeMessageSchema = z.object({
  type: z.literal('welcome'),
  session: z.string(),
  protocol: z.literal(1),
  server: z.string(),
  limits: limitsSchema,
  resume: z.optional(z.string()),
  grace: z.optional(z.number()),
  resumed: z.optional(z.boolean()),
  held: z.optional(z.array(heldLockSchema)),
});

/** A successful reply; its result fields depend on the request's op. */
export const okReplySchema = z.looseObject({
  type: z.literal('reply'),
  id: z.nullable(requestIdSchema),
  ok: z.literal(true),
});

export const errorReplySchema = z.object({
  type: z.literal('reply'),
  id: z.nullable(requestIdSchema),
  ok: z.literal(false),
  error: wireErrorSchema,
});

export const queuedMessageSchema = z.object({
  type: z.literal('queued'),
  id: requestIdSchema,
  key: z.string(),
  position: z.int().check(z.minimum(1)),
});

export const lostReasonSchema = z.enum(['expired', 'stolen', 'revoked']);

export const lostMessageSchema = z.object({
  type: z.literal('lost'),
  key: z.string(),
  token: tokenSchema,
  reason: lostReasonSchema,
});

export const lockEventTypeSchema = z.enum([
  'acquired',
  'released',
  'expired',
  'stolen',
  'revoked',
  'queued',
  'dequeued',
]);

export const eventMessageSchema = z.object({
  type: z.literal('event'),
  key: z.string(),
  event: lockEventTypeSchema,
  session: z.string(),
  token: z.optional(tokenSchema),
  mode: modeSchema,
  meta: metaOutSchema,
  holders: z.int().check(z.minimum(0)),
  waiters: z.int().check(z.minimum(0)),
  at: epochMsSchema,
});

export const serverMessageSchema = z.union([
  welcomeMessageSchema,
  okReplySchema,
  errorReplySchema,
  queuedMessageSchema,
  lostMessageSchema,
  eventMessageSchema,
]);

export type WelcomeMessage = z.infer<typeof welcomeMessageSchema>;
export type OkReply = z.infer<typeof okReplySchema>;
export type ErrorReply = z.infer<typeof errorReplySchema>;
export type ReplyMessage = OkReply | ErrorReply;
export type QueuedMessage = z.infer<typeof queuedMessageSchema>;
export type LostMessage = z.infer<typeof lostMessageSchema>;
export type EventMessage = z.infer<typeof eventMessageSchema>;
export type ServerMessage = z.infer<typeof serverMessageSchema>;

// ---- result fields of successful replies, by op ----

export const holderInfoSchema = z.object({
  session: z.string(),
  mode: modeSchema,
  token: tokenSchema,
  since: epochMsSchema,
  expiresAt: z.nullable(epochMsSchema),
  meta: metaOutSchema,
});
export type HolderInfo = z.infer<typeof holderInfoSchema>;

export const waiterInfoSchema = z.object({
  session: z.string(),
  mode: modeSchema,
  since: epochMsSchema,
  meta: metaOutSchema,
  /**
   * The request's arrival number in the key's queue: a later request of the key has a larger one, so two
   * requests never share it, also when one session leaves and queues again in the same millisecond. Only
   * its order means something. Optional: a server may leave it out.
   */
  seq: z.optional(z.int().check(z.minimum(0), z.maximum(Number.MAX_SAFE_INTEGER))),
});
export type WaiterInfo = z.infer<typeof waiterInfoSchema>;

export const lockStatusSchema = z.object({
  key: z.string(),
  locked: z.boolean(),
  mode: z.nullable(modeSchema),
  holders: z.array(holderInfoSchema),
  queue: z.array(waiterInfoSchema),
  heldByYou: z.optional(z.boolean()),
});
export type LockStatus = z.infer<typeof lockStatusSchema>;

export const acquireResultSchema = z.union([
  z.object({
    acquired: z.literal(true),
    token: tokenSchema,
    expiresAt: z.nullable(epochMsSchema),
  }),
  z.object({ acquired: z.literal(false) }),
]);
export const releaseResultSchema = z.object({ released: z.literal(true) });
export const extendResultSchema = z.object({ expiresAt: z.nullable(epochMsSchema) });
export const waitResultSchema = z.object({ free: z.boolean() });
export const cancelResultSchema = z.object({ cancelled: z.boolean() });
export const listResultSchema = z.object({
  locks: z.array(lockStatusSchema),
  truncated: z.boolean(),
});
export const revokeResultSchema = z.object({ revoked: z.int().check(z.minimum(0)) });
export const pingResultSchema = z.object({ at: epochMsSchema });
export const emptyResultSchema = z.object({});

/** The result fields of a successful reply, by the request's op. */
export const resultSchemas = {
  acquire: acquireResultSchema,
  release: releaseResultSchema,
  extend: extendResultSchema,
  wait: waitResultSchema,
  cancel: cancelResultSchema,
  status: lockStatusSchema,
  list: listResultSchema,
  watch: listResultSchema,
  unwatch: emptyResultSchema,
  revoke: revokeResultSchema,
  ping: pingResultSchema,
} as const;

export type AcquireResult = z.infer<typeof acquireResultSchema>;
export type ExtendResult = z.infer<typeof extendResultSchema>;
export type WaitResult = z.infer<typeof waitResultSchema>;
export type CancelResult = z.infer<typeof cancelResultSchema>;
export type ListResult = z.infer<typeof listResultSchema>;
export type RevokeResult = z.infer<typeof revokeResultSchema>;
export type PingResult = z.infer<typeof pingResultSchema>;
export type ResultOf<O extends keyof typeof resultSchemas> = z.infer<(typeof resultSchemas)[O]>;
