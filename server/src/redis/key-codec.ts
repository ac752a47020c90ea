/**
 * How a lock key becomes Redis key names. A lock key is any string of UTF-16
 * code units (lone surrogates, NUL, `{`, `}`, CRLF, `*` included), so it is
 * encoded as `k` followed by four lowercase hex digits per code unit. The
 * encoding is lossless, uses only `[0-9a-fk]` (safe inside a hash tag and in
 * a SCAN pattern), keeps prefixes (the encoding of a prefix is a prefix of
 * the encoding), and sorts bytewise exactly as the keys sort by code unit.
 * The leading `k` keeps the hash tag non-empty for the empty key: Redis
 * hashes a whole name whose `{}` is empty, which would split its keys over
 * slots.
 */

/** The four hex digits of each code unit below 256, made once: every step encodes its key. */
const LOW_UNITS = Array.from({ length: 256 }, (_, unit) => unit.toString(16).padStart(4, '0'));

/** Encodes a lock key (see the module comment). */
export function encodeKey(key: string): string {
  let out = 'k';
  for (let i = 0; i < key.length; i++) {
    const unit = key.charCodeAt(i);
    out += LOW_UNITS[unit] ?? unit.toString(16).padStart(4, '0');
  }
  return out;
}

/** Decodes `encodeKey`'s output; throws on anything else. */
export function decodeKey(encoded: string): string {
  if (!/^k(?:[0-9a-f]{4})*$/.test(encoded)) throw new Error(`not an encoded lock key: ${encoded}`);
  const units: number[] = [];
  for (let i = 1; i < encoded.length; i += 4) units.push(Number.parseInt(encoded.slice(i, i + 4), 16));
  // Chunked so long keys cannot overflow the argument list.
  let out = '';
  for (let i = 0; i < units.length; i += 1024) out += String.fromCharCode(...units.slice(i, i + 1024));
  return out;
}

/** The Redis key names of one namespace. */
export interface KeyNames {
  /** The five keys of a lock key, in the order the scripts expect (one hash slot). */
  lockKeys(encoded: string): [string, string, string, string, string];
  /** The SCAN pattern of the holder hashes of keys starting with `prefix`. */
  holderPattern(prefix: string): string;
  /** The encoded key of a holders hash name found by SCAN, or null. */
  encodedOfHolders(name: string): string | null;
  /** A node's liveness key. */
  node(id: string): string;
  /** The set of every registered node id. */
  nodes(): string;
  /** The set of encoded keys a node's sessions hold, wait for or queue for. */
  nodeKeys(id: string): string;
  /** Set by a node that found Redis lost its state: no grants until it expires. */
  holdoff(): string;
  /**
   * A node's sentinel on one primary of a Redis Cluster: `tag` (plain
   * `[a-z0-9]`) is the hash tag of a slot that primary owns, so the key lives
   * there (see `ShardSentinels`).
   */
  shardSentinel(tag: string, id: string): string;
  /**
   * The prefix of every pub/sub channel, which the scripts publish under:
   * the namespace, then `:db` and the database when that is not 0. Redis
   * pub/sub spans the databases of a server, so two tables in two databases
   * would otherwise hear each other's steps; database 0 keeps the bare
   * namespace, the channel names of a single-database deployment.
   */
  channelPrefix(): string;
  /** The channel of notifications to one node. */
  nodeChannel(id: string): string;
  /** The channel every node hears events on. */
  eventChannel(): string;
}

/** Valid namespaces: plain text that cannot form a hash tag or a glob. */
export const NAMESPACE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Key and channel names under `namespace` (default `lw`) in Redis database
 * `database` (default 0; keys are kept apart by the database itself, only
 * channels name it). Throws on a namespace outside `NAMESPACE_PATTERN` or a
 * database that is not a non-negative integer.
 */
export function keyNames(namespace: string, database = 0): KeyNames {
  if (!NAMESPACE_PATTERN.test(namespace)) throw new Error(`namespace: expected ${NAMESPACE_PATTERN.source}`);
  if (!Number.isSafeInteger(database) || database < 0) throw new Error(`database: expected a non-negative integer, got ${database}`);
  const ns = namespace;
  // A namespace holds no `:`, so `lw:db1` is no other namespace's prefix, and
  // no node id after `lw:n:` makes a channel of it.
  const channels = database === 0 ? ns : `${ns}:db${database}`;
  const holdersRe = new RegExp(`^${ns.replace(/\./g, '\\.')}:\\{(k(?:[0-9a-f]{4})*)\\}:h$`);
  return {
    lockKeys: (e) => [`${ns}:{${e}}:k`, `${ns}:{${e}}:h`, `${ns}:{${e}}:q`, `${ns}:{${e}}:w`, `${ns}:{${e}}:v`],
    holderPattern: (prefix) => `${ns}:{${encodeKey(prefix)}*}:h`,
    encodedOfHolders: (name) => holdersRe.exec(name)?.[1] ?? null,
    node: (id) => `${ns}:node:${id}`,
    nodes: () => `${ns}:nodes`,
    nodeKeys: (id) => `${ns}:nk:{${id}}`,
    holdoff: () => `${ns}:holdoff`,
    shardSentinel: (tag, id) => `${ns}:shard:{${tag}}:${id}`,
    channelPrefix: () => channels,
    nodeChannel: (id) => `${channels}:n:${id}`,
    eventChannel: () => `${channels}:e`,
  };
}

/**
 * The database a single server's `redis://host:port/db` URL selects, read as
 * the Redis client reads it: 0 without one, and for a URL the client refuses
 * (its connect fails instead).
 */
export function databaseOfUrl(url: string): number {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return 0;
  }
  const database = Number(path.slice(1));
  return Number.isSafeInteger(database) && database >= 0 ? database : 0;
}
