import { decodeClientMessage, ErrorCode, OPS, type DecodedClientMessage, type Op, type RequestId, type WireError } from '@lockwire/protocol';
import type { RawData } from 'ws';
import type { RateVerdict } from './rate-limit.js';

/** A frame's payload as text (UTF-8), however `ws` handed it over. */
export function frameText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}

/** How decoding a frame went: the decoder's result, or what it threw. */
export type FrameDecoding = { threw: false; decoded: DecodedClientMessage } | { threw: true; error: unknown };

/**
 * Decodes a frame, catching what the decoder throws, which it never should:
 * a bug then costs that one frame (answered `internal`), not the process
 * and every session's locks with it.
 */
export function decodeFrame(text: string, maxKeyLength: number): FrameDecoding {
  try {
    return { threw: false, decoded: decodeClientMessage(text, { maxKeyLength }) };
  } catch (error) {
    return { threw: true, error };
  }
}

/**
 * The op a frame the decoder refused names, when it is one of the
 * protocol's, else null: the decoder tells only the id of a frame it
 * refuses, and a refused `acquire` still counts its outcome. The text is
 * parsed again only on the way to that refusal.
 */
export function namedOp(text: string): Op | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, 'op')) return null;
  const op: unknown = (value as { op: unknown }).op;
  return OPS.find((known) => known === op) ?? null;
}

/**
 * The refusal of a frame with id `id` (null when it has none) that comes
 * before its decoding errors and the guard, or null. In order:
 * `duplicate_id` for the id of a request in `pending` (that request stays
 * pending, and no other refusal may be read as its answer), `unauthorized`
 * while the session's `expired` credentials are acted on, `rate_limited`
 * for a frame the rate limiter's `verdict` refuses.
 */
export function earlyRefusal(
  id: RequestId | null,
  pending: { has(id: RequestId): boolean },
  expired: boolean,
  verdict: RateVerdict,
): WireError | null {
  if (id !== null && pending.has(id)) {
    return { code: ErrorCode.DuplicateId, message: `id: ${JSON.stringify(id)} is already pending` };
  }
  if (expired) return { code: ErrorCode.Unauthorized, message: 'the credentials expired' };
  if (verdict === 'refuse') {
    return { code: ErrorCode.RateLimited, message: 'this session sends faster than allowed; the frame was not processed' };
  }
  return null;
}
