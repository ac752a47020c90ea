import * as z from 'zod/mini';
import { DEFAULT_LIMITS, MAX_DURATION_MS, MAX_LIST_LIMIT, MAX_META_BYTES } from './codes.js';

/** A request id: a non-negative safe integer or a string of 1 to 64 characters. */
export const requestIdSchema = z.union([
  z.int().check(z.minimum(0), z.maximum(Number.MAX_SAFE_INTEGER)),
  z.string().check(z.minLength(1), z.maxLength(64)),
]);
export type RequestId = z.infer<typeof requestIdSchema>;

/**
 * A key: any string of UTF-16 code units. The length bound is the server's
 * `maxKeyLength`, checked by `decodeClientMessage`, not here.
 */
export const keySchema = z.string();

/** Milliseconds from 0 to 2^31 - 1; `null` (or absent) means no limit. */
export const durationSchema = z.nullable(
  z.number().check(z.minimum(0), z.maximum(MAX_DURATION_MS)),
);

export const modeSchema = z.enum(['exclusive', 'shared']);

const textEncoder = new TextEncoder();

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Bytes of the UTF-8 of `value`'s compact JSON. A value nested too deeply
 * for `JSON.stringify` (which recurses) is far larger than any limit here,
 * so it counts as infinitely large instead of throwing out of the decoder.
 */
function compactSize(value: unknown): number {
  try {
    return textEncoder.encode(JSON.stringify(value)).length;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/**
 * `meta`: a JSON object of at most 1024 bytes (UTF-8 of its compact JSON).
 * The value is kept as parsed (not rebuilt), so keys such as `__proto__`
 * stay ordinary own properties.
 */
export const metaSchema = z.nullable(
  z.custom<Record<string, unknown>>(isPlainObject, { error: 'expected a JSON object' }).check(
    z.refine((value) => compactSize(value) <= MAX_META_BYTES, {
      error: `larger than ${MAX_META_BYTES} bytes as compact JSON`,
    }),
  ),
);

const limitSchema = z.int().check(z.minimum(1), z.maximum(MAX_LIST_LIMIT));

export const acquireRequestSchema = z.strictObject({
  op: z.literal('acquire'),
  id: requestIdSchema,
  key: keySchema,
  mode: z.optional(modeSchema),
  acquireTimeout: z.optional(durationSchema),
  holdTimeout: z.optional(durationSchema),
  steal: z.optional(z.boolean()),
  meta: z.optional(metaSchema),
});

export const releaseRequestSchema = z.strictObject({
  op: z.literal('release'),
  id: requestIdSchema,
  key: keySchema,
});

export const extendRequestSchema = z.strictObject({
  op: z.literal('extend'),
  id: requestIdSchema,
  key: keySchema,
  holdTimeout: durationSchema,
});

export const waitRequestSchema = z.strictObject({
  op: z.literal('wait'),
  id: requestIdSchema,
  key: keySchema,
  timeout: z.optional(durationSchema),
});

export const cancelRequestSchema = z.strictObject({
  op: z.literal('cancel'),
  id: requestIdSchema,
  target: requestIdSchema,
});

export const statusRequestSchema = z.strictObject({
  op: z.literal('status'),
  id: requestIdSchema,
  key: keySchema,
});

export const listRequestSchema = z.strictObject({
  op: z.literal('list'),
  id: requestIdSchema,
  prefix: z.optional(keySchema),
  limit: z.optional(limitSchema),
});

export const watchRequestSchema = z.strictObject({
  op: z.literal('watch'),
  id: requestIdSchema,
  prefix: z.optional(keySchema),
  limit: z.optional(limitSchema),
});

export const unwatchRequestSchema = z.strictObject({
  op: z.literal('unwatch'),
  id: requestIdSchema,
  prefix: z.optional(keySchema),
});

export const revokeRequestSchema = z.strictObject({
  op: z.literal('revoke'),
  id: requestIdSchema,
  key: keySchema,
});

export const pingRequestSchema = z.strictObject({
  op: z.literal('ping'),
  id: requestIdSchema,
});

/** Every request schema by its `op`. */
export const requestSchemas = {
  acquire: acquireRequestSchema,
  release: releaseRequestSchema,
  extend: extendRequestSchema,
  wait: waitRequestSchema,
  cancel: cancelRequestSchema,
  status: statusRequestSchema,
  list: listRequestSchema,
  watch: watchRequestSchema,
  unwatch: unwatchRequestSchema,
  revoke: revokeRequestSchema,
  ping: pingRequestSchema,
} as const;

export type Op = keyof typeof requestSchemas;
export const OPS = Object.keys(requestSchemas) as Op[];

export const clientMessageSchema = z.discriminatedUnion('op', [
  acquireRequestSchema,
  releaseRequestSchema,
  extendRequestSchema,
  waitRequestSchema,
  cancelRequestSchema,
  statusRequestSchema,
  listRequestSchema,
  watchRequestSchema,
  unwatchRequestSchema,
  revokeRequestSchema,
  pingRequestSchema,
]);

export type ClientMessage = z.infer<typeof clientMessageSchema>;
export type AcquireRequest = z.infer<typeof acquireRequestSchema>;
export type ReleaseRequest = z.infer<typeof releaseRequestSchema>;
export type ExtendRequest = z.infer<typeof extendRequestSchema>;
export type WaitRequest = z.infer<typeof waitRequestSchema>;
export type CancelRequest = z.infer<typeof cancelRequestSchema>;
export type StatusRequest = z.infer<typeof statusRequestSchema>;
export type ListRequest = z.infer<typeof listRequestSchema>;
export type WatchRequest = z.infer<typeof watchRequestSchema>;
export type UnwatchRequest = z.infer<typeof unwatchRequestSchema>;
export type RevokeRequest = z.infer<typeof revokeRequestSchema>;
export type PingRequest = z.infer<typeof pingRequestSchema>;

/** A request of one op, e.g. `RequestOf<'acquire'>`. */
export type RequestOf<O extends Op> = Extract<ClientMessage, { op: O }>;

/** The default `maxKeyLength` a decoder applies. */
export const DEFAULT_MAX_KEY_LENGTH = DEFAULT_LIMITS.maxKeyLength;
