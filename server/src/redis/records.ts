import type { HolderInfo, LockEventType, LockMode, LockStatus, LostReason, WaiterInfo } from '@lockwire/protocol';
import type { Instant } from '../clock.js';
import type { LockEvent, Meta, SessionId } from '../store.js';
import { decodeKey } from './key-codec.js';

/**
 * Typed views of what the Lua scripts return and publish. The scripts are
 * ours, so a malformed value is a bug: the readers below coerce instead of
 * validating field by field, and JSON that is not an object throws.
 */
export type Json = Record<string, unknown>;

export function parseJson(text: unknown): Json {
  if (typeof text !== 'string') throw new Error('expected a JSON string from Redis');
  const value: unknown = JSON.parse(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('expected a JSON object from Redis');
  return value as Json;
}

export function obj(value: unknown): Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

/** cjson writes an empty Lua table as `{}`, so an array may arrive as an empty object. */
export function arr(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

export function str(o: Json, field: string): string {
  const value = o[field];
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : '';
}

export function num(o: Json, field: string): number {
  return Number(o[field] ?? 0);
}

/** `''` (no expiry) or decimal epoch ms. */
export function expiresAtOf(text: string): number | null {
  return text === '' ? null : Number(text);
}

export function metaOf(text: string): Meta | null {
  return text === '' ? null : (JSON.parse(text) as Meta);
}

export function modeOf(text: string): LockMode {
  return text === 'shared' ? 'shared' : 'exclusive';
}

/** A queued request's arrival seq from its decimal text; `undefined` when absent or not a safe whole number. */
export function seqOf(text: string): number | undefined {
  return /^\d+$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : undefined;
}

/**
 * A note to one node about one of its sessions. A `granted` note in the
 * reply of this node's own step carries `sent`, the store's clock as read
 * when that step was sent: its wall reading is the `now` the script computed
 * `expiresAt` from, so the hold is timed from `sent` (see `dueOfStep`).
 * Notes from other nodes' steps, heard over pub/sub, carry none.
 */
export type Note =
  | { y: 'granted'; session: SessionId; ticket: number; token: number; expiresAt: number | null; sent?: Instant }
  | { y: 'lost'; session: SessionId; token: number; reason: LostReason }
  | { y: 'waitDone'; session: SessionId; ticket: number };

/**
 * One item of a step's ordered log: a note or an event. A `queued` event
 * comes with its request's arrival `seq` (as in the queue's entries), kept
 * beside the event: it is for this node's watches, not for the wire.
 */
export type Item = Note | { y: 'ev'; event: LockEvent; seq?: number };

/** One step of one key, as a node receives it: from its reply, its node channel or the broadcast. */
export interface Batch {
  key: string;
  encoded: string;
  /** Event version before and after the step; `v` is `0` when the step had no events. */
  pv: number;
  v: number;
  items: Item[];
  /** Node and call that ran the step (broadcast only). */
  origin?: string;
  call?: string;
}

export function parseBatch(o: Json): Batch {
  const encoded = str(o, 'k');
  const batch: Batch = {
    key: decodeKey(encoded),
    encoded,
    pv: Number(str(o, 'pv')),
    v: Number(str(o, 'v')),
    items: [],
  };
  batch.items = parseItems(batch.key, num(o, 'at'), arr(o.it));
  if (typeof o.o === 'string') batch.origin = o.o;
  if (typeof o.c === 'string') batch.call = o.c;
  return batch;
}

/** The reply of a state-changing script: its step's batch, the result, and the key's version after the step. */
export interface StepReply {
  batch: Batch;
  result: Json;
  /** The key's event version after the step, also when it had no events. */
  cv: number;
}

/**
 * Reads a script's reply, `pv v cv at notes result` then a newline and the
 * items' JSON array (see the prelude's `finish`). The items are parsed
 * only when they hold a note for this node or `withEvents` (a watch here
 * covers the key): a node with no watcher on the key reads no event of its
 * own steps, as it reads none of other nodes' broadcasts.
 */
export function parseStepReply(text: unknown, key: string, encoded: string, withEvents: boolean): StepReply {
  if (typeof text !== 'string') throw new Error('expected a string from Redis');
  const cut = fieldEnds(text, 5);
  if (cut === null) throw new Error('expected a step reply from Redis');
  const [s1, s2, s3, s4, s5] = cut as [number, number, number, number, number];
  const nl = text.indexOf('\n', s5 + 1);
  if (nl < 0) throw new Error('expected a step reply from Redis');
  const at = Number(text.slice(s3 + 1, s4));
  const noted = text.slice(s4 + 1, s5) === '1';
  const items = noted || withEvents ? parseItems(key, at, arr(JSON.parse(text.slice(nl + 1)))) : [];
  return {
    batch: { key, encoded, pv: Number(text.slice(0, s1)), v: Number(text.slice(s1 + 1, s2)), items },
    result: parseJson(text.slice(s5 + 1, nl)),
    cv: Number(text.slice(s2 + 1, s3)),
  };
}

/** Where each of the first `count` space-ended fields of `text` ends (its space's offset); null when there are fewer. */
function fieldEnds(text: string, count: number): number[] | null {
  const ends: number[] = [];
  let from = 0;
  for (let i = 0; i < count; i++) {
    const space = text.indexOf(' ', from);
    if (space < 0) return null;
    ends.push(space);
    from = space + 1;
  }
  return ends;
}

/** The plain-text head of a broadcast: `origin call key pv v at `, then the items' JSON array. */
export interface BroadcastHead {
  origin: string;
  call: string;
  encoded: string;
  pv: number;
  v: number;
  at: number;
  /** Where the items' JSON starts. */
  itemsAt: number;
}

/** Reads a broadcast's head without touching its items; null when it is not one. */
export function readBroadcastHead(message: string): BroadcastHead | null {
  // Every node reads the head of every step's broadcast, its own included:
  // the six fields are cut straight out of the text.
  const cut = fieldEnds(message, 6);
  if (cut === null) return null;
  const [s1, s2, s3, s4, s5, s6] = cut as [number, number, number, number, number, number];
  return {
    origin: message.slice(0, s1),
    call: message.slice(s1 + 1, s2),
    encoded: message.slice(s2 + 1, s3),
    pv: Number(message.slice(s3 + 1, s4)),
    v: Number(message.slice(s4 + 1, s5)),
    at: Number(message.slice(s5 + 1, s6)),
    itemsAt: s6 + 1,
  };
}

/**
 * A broadcast as a batch. With `withItems` false its events are left unread
 * (and its `key` empty): the batch then only moves the key's version on.
 */
export function parseBroadcast(message: string, head: BroadcastHead, withItems: boolean): Batch {
  const key = withItems ? decodeKey(head.encoded) : '';
  const items = withItems ? parseItems(key, head.at, arr(JSON.parse(message.slice(head.itemsAt)))) : [];
  return { key, encoded: head.encoded, pv: head.pv, v: head.v, items, origin: head.origin, call: head.call };
}

function parseItems(key: string, at: number, raw: unknown[]): Item[] {
  const items: Item[] = [];
  for (const entry of raw) {
    const it = obj(entry);
    const y = str(it, 'y');
    if (y === 'ev') {
      const token = str(it, 't');
      const event: LockEvent = {
        key,
        event: str(it, 'e') as LockEventType,
        session: str(it, 's'),
        mode: modeOf(str(it, 'm')),
        meta: metaOf(str(it, 'd')),
        holders: num(it, 'h'),
        waiters: num(it, 'w'),
        at,
      };
      if (token !== '') event.token = Number(token);
      const seq = seqOf(str(it, 'o'));
      items.push(seq === undefined ? { y: 'ev', event } : { y: 'ev', event, seq });
    } else if (y === 'granted') {
      items.push({
        y,
        session: str(it, 's'),
        ticket: Number(str(it, 'i')),
        token: Number(str(it, 't')),
        expiresAt: expiresAtOf(str(it, 'x')),
      });
    } else if (y === 'lost') {
      items.push({ y, session: str(it, 's'), token: Number(str(it, 't')), reason: str(it, 'r') as LostReason });
    } else if (y === 'waitDone') {
      items.push({ y, session: str(it, 's'), ticket: Number(str(it, 'i')) });
    }
  }
  return items;
}

/** A key's status as the `status` script reads it, with its event version. */
export function parseStatus(key: string, o: Json, viewer: SessionId | null): { status: LockStatus; version: number } {
  const holders: HolderInfo[] = arr(o.h).map((raw) => {
    const h = obj(raw);
    return {
      session: str(h, 's'),
      mode: modeOf(str(h, 'm')),
      token: Number(str(h, 't')),
      since: Number(str(h, 'c')),
      expiresAt: expiresAtOf(str(h, 'x')),
      meta: metaOf(str(h, 'd')),
    };
  });
  const queue: WaiterInfo[] = arr(o.q).map((raw) => {
    const w = obj(raw);
    const waiter: WaiterInfo = {
      session: str(w, 's'),
      mode: modeOf(str(w, 'm')),
      since: Number(str(w, 'c')),
      meta: metaOf(str(w, 'd')),
    };
    const seq = seqOf(str(w, 'o'));
    if (seq !== undefined) waiter.seq = seq;
    return waiter;
  });
  const first = holders[0];
  const status: LockStatus = { key, locked: holders.length > 0, mode: first ? first.mode : null, holders, queue };
  if (viewer !== null) status.heldByYou = holders.some((h) => h.session === viewer);
  return { status, version: Number(str(o, 'v')) };
}
