import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { KeyNames } from './key-codec.js';
import type { RedisLink } from './redis-link.js';

/** How many tags are tried for a primary before it is left without a sentinel until the next round. */
const MAX_TAGS = 1 << 20;

export interface ShardSentinelsOptions {
  link: RedisLink;
  names: KeyNames;
  /** ms a sentinel lives after its last renew; above the liveness key's TTL, so it outlives the node's vouching. */
  ttl: number;
  /** Its monotonic reading times the sentinels' lives. */
  clock: Clock;
  logger: Logger;
}

interface Sentinel {
  readonly name: string;
  readonly slot: number;
  /** When (monotonic ms) the last renew (or the SET) of it that succeeded was sent. */
  renewedAt: number;
}

/** Slot ranges (inclusive), one primary's. */
type Ranges = ReadonlyArray<readonly [number, number]>;

/**
 * A node's sentinels on the primaries of a Redis Cluster, which tell it when
 * one of them lost its state. A `FLUSHALL` on a primary leaves its `run_id`
 * as it was, and the node's liveness key lives on one primary only, so the
 * node keeps a key of its own on every primary, `<ns>:shard:{<tag>}:<id>`,
 * whose hash tag names a slot that primary owns (the primaries' slots read
 * with `CLUSTER SLOTS`). Each renew round renews them all with `PEXPIRE`,
 * beside the `run_id` reads: one that answers 0 although its last renew
 * answered less than `ttl` ago was removed, and Redis lost its state.
 *
 * The sentinels are the node's own (its id is in their names): a node that
 * places a new one after a flush never hides that flush from another node
 * that has not looked yet. They are sent by key, so one follows its slot
 * when a resharding moves it or a failover promotes a replica. A primary
 * left without one (its sentinel's slot moved away, it took slots it did not
 * have, or it refused the placement, full) gets a new one at the next round
 * whose `CLUSTER SLOTS` shows it and that it accepts: a flush of it before
 * that goes unseen. A primary that now holds two keeps
 * the first; the other is no longer renewed and expires, as do those of an
 * id the node gave up.
 */
export class ShardSentinels {
  readonly #o: ShardSentinelsOptions;
  #id: string | null = null;
  #placed: Sentinel[] = [];

  constructor(options: ShardSentinelsOptions) {
    this.#o = options;
  }

  /**
   * Places sentinels of node id `id` on every primary; those of the previous
   * id are no longer renewed. A primary whose sentinel cannot be placed now
   * (say, it is full: `maxmemory` with `noeviction`) is left unwatched and
   * tried again at the next `check()`, as one left bare by a resharding: a
   * node must not be kept from registering by a full primary its own keys
   * may not even live on. Throws when the slots cannot be read.
   */
  async register(id: string): Promise<void> {
    this.#id = id;
    this.#placed = [];
    const failed = await this.#cover(id, await this.#slots());
    if (failed !== undefined) this.#o.logger.debug({ node: id, err: String(failed) }, 'a shard sentinel not placed yet; retrying');
  }

  /**
   * Renews the sentinels and reads the primaries' slots: true when a
   * sentinel was gone while it should have lived (its primary lost its
   * state). Otherwise places one on each primary left without; one that
   * cannot be placed now (say, Redis is full) is tried again next round.
   * Throws when a renew or the slots cannot be read.
   */
  async check(): Promise<boolean> {
    const id = this.#id;
    if (id === null) return false;
    const { link, ttl, clock } = this.#o;
    const placed = this.#placed;
    const sentAt = clock.monotonic();
    const [slots, replies] = await Promise.all([
      this.#slots(),
      Promise.all(placed.map((sentinel) => link.command(sentinel.name, ['PEXPIRE', sentinel.name, String(ttl)]))),
    ]);
    // Each renew ran before its answer came: a sentinel renewed less than its TTL before that was still there.
    const answeredAt = clock.monotonic();
    if (this.#id !== id) return false;
    let lost = false;
    const kept: Sentinel[] = [];
    placed.forEach((sentinel, i) => {
      if (Number(replies[i]) === 1) {
        sentinel.renewedAt = sentAt;
        kept.push(sentinel);
      } else if (answeredAt - sentinel.renewedAt < ttl) {
        lost = true;
      }
      // Else it expired with the node's liveness key (the node had given up its holds): a new one takes its place.
    });
    this.#placed = kept;
    if (lost) return true;
    const failed = await this.#cover(id, slots);
    if (failed !== undefined) this.#o.logger.debug({ err: String(failed) }, 'a shard sentinel not placed yet; retrying');
    return false;
  }

  /** Removes the sentinels (the node stops). */
  async drop(): Promise<void> {
    const names = this.#placed.map((sentinel) => sentinel.name);
    this.#id = null;
    this.#placed = [];
    await Promise.allSettled(names.map((name) => this.#o.link.command(name, ['DEL', name])));
  }

  /**
   * Keeps one sentinel per primary of `slots` and places one on each
   * primary without; answers the first error of a placement that failed.
   */
  async #cover(id: string, slots: ReadonlyMap<string, Ranges>): Promise<Error | undefined> {
    const { link, names, ttl, clock } = this.#o;
    const spare = new Set<Sentinel>();
    const bare: Ranges[] = [];
    for (const ranges of slots.values()) {
      const own = this.#placed.filter((sentinel) => owns(ranges, sentinel.slot));
      for (const sentinel of own.slice(1)) spare.add(sentinel);
      if (own.length === 0) bare.push(ranges);
    }
    // A sentinel in no listed slot (the slots being reassigned) is kept: it may still watch a primary.
    this.#placed = this.#placed.filter((sentinel) => !spare.has(sentinel));
    const placements = await Promise.allSettled(
      bare.map(async (ranges) => {
        const found = tagIn(ranges);
        if (found === undefined) return;
        const name = names.shardSentinel(found.tag, id);
        const sentAt = clock.monotonic();
        await link.command(name, ['SET', name, String(clock.now()), 'PX', String(ttl)]);
        if (this.#id === id) this.#placed.push({ name, slot: found.slot, renewedAt: sentAt });
      }),
    );
    for (const placement of placements) {
      if (placement.status === 'rejected') {
        const reason: unknown = placement.reason;
        return reason instanceof Error ? reason : new Error(String(reason));
      }
    }
    return undefined;
  }

  /** Each primary's slot ranges, by its cluster node id, from `CLUSTER SLOTS`. */
  async #slots(): Promise<ReadonlyMap<string, Ranges>> {
    const reply = await this.#o.link.command(undefined, ['CLUSTER', 'SLOTS']);
    const slots = new Map<string, Array<readonly [number, number]>>();
    for (const entry of listOf(reply) ?? []) {
      const [from, to, primary] = listOf(entry) ?? [];
      const node = listOf(primary);
      if (node === null) continue;
      const nodeId = node[2];
      const key = typeof nodeId === 'string' && nodeId !== '' ? nodeId : `${String(node[0])}:${String(node[1])}`;
      const ranges = slots.get(key) ?? [];
      ranges.push([Number(from), Number(to)]);
      slots.set(key, ranges);
    }
    return slots;
  }
}

function listOf(value: unknown): readonly unknown[] | null {
  return Array.isArray(value) ? (value as unknown[]) : null;
}

function owns(ranges: Ranges, slot: number): boolean {
  return ranges.some(([from, to]) => slot >= from && slot <= to);
}

/** The first tag (`s0`, `s1`, ... in base 36) whose slot is in `ranges`, with that slot. */
function tagIn(ranges: Ranges): { tag: string; slot: number } | undefined {
  for (let n = 0; n < MAX_TAGS; n++) {
    const tag = `s${n.toString(36)}`;
    const slot = hashSlot(tag);
    if (owns(ranges, slot)) return { tag, slot };
  }
  return undefined;
}

/** Redis Cluster's hash slot of a hash tag of ASCII characters: CRC16 (XMODEM) modulo 16384. */
export function hashSlot(tag: string): number {
  let crc = 0;
  for (let i = 0; i < tag.length; i++) {
    crc ^= tag.charCodeAt(i) << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc & 16383;
}
