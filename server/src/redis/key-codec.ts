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

/** Encodes a lock key (see the module comment). */
export function encodeKey(key: string): string {
  let out = 'k';
  for (let i = 0; i < key.length; i++) out += key.charCodeAt(i).toString(16).padStart(4, '0');
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
  /** The channel of notifications to one node. */
  nodeChannel(id: string): string;
  /** The channel every node hears events on. */
  eventChannel(): string;
}

/** Valid namespaces: plain text that cannot form a hash tag or a glob. */
export const NAMESPACE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Key names under `namespace` (default `lw`). */
export function keyNames(namespace: string): KeyNames {
  if (!NAMESPACE_PATTERN.test(namespace)) throw new Error(`namespace: expected ${NAMESPACE_PATTERN.source}`);
  const ns = namespace;
  const holdersRe = new RegExp(`^${ns.replace(/\./g, '\\.')}:\\{(k(?:[0-9a-f]{4})*)\\}:h$`);
  return {
    lockKeys: (e) => [`${ns}:{${e}}:k`, `${ns}:{${e}}:h`, `${ns}:{${e}}:q`, `${ns}:{${e}}:w`, `${ns}:{${e}}:v`],
    holderPattern: (prefix) => `${ns}:{${encodeKey(prefix)}*}:h`,
    encodedOfHolders: (name) => holdersRe.exec(name)?.[1] ?? null,
    node: (id) => `${ns}:node:${id}`,
    nodes: () => `${ns}:nodes`,
    nodeKeys: (id) => `${ns}:nk:{${id}}`,
    holdoff: () => `${ns}:holdoff`,
    nodeChannel: (id) => `${ns}:n:${id}`,
    eventChannel: () => `${ns}:e`,
  };
}
