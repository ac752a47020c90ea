import type * as z from 'zod/mini';
import { DEFAULT_LIMITS, ErrorCode } from './codes.js';
import {
  requestIdSchema,
  requestSchemas,
  type ClientMessage,
  type Op,
  type RequestId,
} from './client-messages.js';
import { serverMessageSchema, type ServerMessage, type WireError } from './server-messages.js';

/** The outcome of decoding a client frame: a typed message, or the error to answer with. */
export type DecodedClientMessage =
  | { ok: true; message: ClientMessage }
  | { ok: false; id: RequestId | null; error: WireError };

export interface DecodeOptions {
  /** Longest key (and prefix) accepted, in UTF-16 code units. Default 256. */
  maxKeyLength?: number;
}

function badRequest(id: RequestId | null, message: string): DecodedClientMessage {
  return { ok: false, id, error: { code: ErrorCode.BadRequest, message } };
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const segment of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[segment];
  }
  return value;
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    case 'invalid_type':
      return valueAt(input, issue.path) === undefined ? 'required' : `expected ${issue.expected}`;
    case 'invalid_value':
      return `expected ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}`;
    case 'too_big':
      return issue.origin === 'string'
        ? `longer than ${String(issue.maximum)} characters`
        : `must be at most ${String(issue.maximum)}`;
    case 'too_small':
      return issue.origin === 'string'
        ? `shorter than ${String(issue.minimum)} characters`
        : `must be at least ${String(issue.minimum)}`;
    case 'invalid_union':
      return valueAt(input, issue.path) === undefined ? 'required' : 'invalid value';
    default:
      return issue.message && issue.message !== 'Invalid input' ? issue.message : 'invalid value';
  }
}

function formatIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const path = issue.path.map(String).join('.');
  const text = describeIssue(issue, input);
  return path && issue.code !== 'unrecognized_keys' ? `${path}: ${text}` : text;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const hasOwn = (obj: object, key: string) => Object.prototype.hasOwnProperty.call(obj, key);

/** Longest part of an unknown op's text quoted back in its refusal. */
const QUOTED_OP_CHARS = 64;

/**
 * An unknown op as its refusal names it, without serialising what the
 * client sent: `JSON.stringify` recurses, and an op nested a few thousand
 * arrays deep (a 10 KB frame) would overflow the stack. A string is quoted
 * (its first 64 characters), a number, boolean or null written as JSON, and
 * an object or array named by its type.
 */
function describeOp(op: unknown): string {
  if (typeof op === 'string') {
    return op.length > QUOTED_OP_CHARS ? `${JSON.stringify(op.slice(0, QUOTED_OP_CHARS))}...` : JSON.stringify(op);
  }
  if (op === null || typeof op === 'number' || typeof op === 'boolean') return String(op);
  return Array.isArray(op) ? 'of type array' : `of type ${typeof op}`;
}

/**
 * The `bad_request` for a frame that is not a valid request, in order of
 * precedence: missing op, unknown op, missing id, invalid id, then the
 * schema's first issue (with the request's id).
 */
function rejection(
  value: Record<string, unknown>,
  op: unknown,
  issue: z.core.$ZodIssue | undefined,
): DecodedClientMessage {
  const idResult = hasOwn(value, 'id') ? requestIdSchema.safeParse(value.id) : undefined;
  const id = idResult?.success ? idResult.data : null;
  if (op === undefined) return badRequest(id, 'op: required');
  if (typeof op !== 'string' || !hasOwn(requestSchemas, op)) {
    return badRequest(id, `op: unknown op ${describeOp(op)}`);
  }
  if (!idResult) return badRequest(null, 'id: required');
  if (!idResult.success) {
    return badRequest(null, 'id: expected a non-negative safe integer or a string of 1 to 64 characters');
  }
  return badRequest(id, issue ? formatIssue(issue, value) : 'invalid request');
}

/** Ops whose plainest request is `{ op, id, key }` and nothing else. */
const KEY_ONLY_OPS: ReadonlySet<string> = new Set(['acquire', 'release', 'status', 'revoke']);

/**
 * The request when `value` is exactly `{ op, id, key }` with a valid id and
 * a string key for an op whose schema needs nothing more (an `acquire`
 * without options, a `release`, `status` or `revoke`), else null. Most
 * frames are these; checking them here costs a fraction of a schema parse,
 * and the message is the one the schema would produce (its fields in the
 * schema's order, optional ones absent). Everything else, every invalid
 * frame included, goes through the schema.
 */
function keyOnlyRequest(value: Record<string, unknown>): ClientMessage | null {
  const fields = Object.keys(value);
  if (fields.length !== 3 || !hasOwn(value, 'op') || !hasOwn(value, 'id') || !hasOwn(value, 'key')) return null;
  const { op, id, key } = value;
  if (typeof op !== 'string' || !KEY_ONLY_OPS.has(op) || typeof key !== 'string') return null;
  const validId =
    typeof id === 'string'
      ? id.length >= 1 && id.length <= 64
      : typeof id === 'number' && Number.isSafeInteger(id) && id >= 0;
  if (!validId) return null;
  return { op, id, key } as ClientMessage;
}

/**
 * Parses and validates one text frame from a client. Never throws: an
 * invalid frame yields the `bad_request` to answer with, and the request's
 * `id` when it had a usable one (else `null`).
 */
export function decodeClientMessage(text: string, options: DecodeOptions = {}): DecodedClientMessage {
  const maxKeyLength = options.maxKeyLength ?? DEFAULT_LIMITS.maxKeyLength;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return badRequest(null, 'frame is not valid JSON');
  }
  if (!isPlainObject(value)) return badRequest(null, 'frame is not a JSON object');

  const plain = keyOnlyRequest(value);
  if (plain) return checkLengths(plain, maxKeyLength);
  const op = hasOwn(value, 'op') ? value.op : undefined;
  const schema = typeof op === 'string' && hasOwn(requestSchemas, op) ? requestSchemas[op as Op] : undefined;
  // Each request is validated once: every request schema checks `id` too, so
  // a frame its schema accepts needs no separate id check. That check runs
  // only on the way to an error, to name the id in the reply.
  const parsed = schema?.safeParse(value);
  if (!parsed?.success) return rejection(value, op, parsed?.error.issues[0]);
  return checkLengths(parsed.data as ClientMessage, maxKeyLength);
}

/** The decoded message, or `bad_request` when its key or prefix is longer than `maxKeyLength`. */
function checkLengths(message: ClientMessage, maxKeyLength: number): DecodedClientMessage {
  for (const field of ['key', 'prefix'] as const) {
    const s = (message as Record<string, unknown>)[field];
    if (typeof s === 'string' && s.length > maxKeyLength) {
      return badRequest(message.id, `${field}: longer than maxKeyLength (${maxKeyLength})`);
    }
  }
  return { ok: true, message };
}

/** The error for a binary frame, which the protocol does not accept. */
export function binaryFrameError(): WireError {
  return { code: ErrorCode.BadRequest, message: 'binary frames are not accepted; send JSON text' };
}

/** The outcome of decoding a server frame. */
export type DecodedServerMessage =
  | { ok: true; message: ServerMessage }
  | { ok: false; error: string };

/** Parses and validates one text frame from the server. Never throws. */
export function decodeServerMessage(text: string): DecodedServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: 'frame is not valid JSON' };
  }
  const parsed = serverMessageSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    return { ok: false, error: first ? formatIssue(first, value) : 'invalid server message' };
  }
  return { ok: true, message: parsed.data };
}
