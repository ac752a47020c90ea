/**
 * TLS of the Redis link (`rediss://`): the trust and client identity the
 * link's sockets carry, and how a first connection that TLS refuses is told
 * apart from a Redis that is merely not up yet.
 */

/** PEM text, as read from a file (a string or the file's Buffer). */
export type Pem = string | Buffer;

/**
 * TLS settings of a `rediss://` link, for a single server and for every node
 * of a Redis Cluster alike. Without `ca` the server's certificate must be
 * signed by a CA the system trusts.
 */
export interface RedisTlsOptions {
  /** CA certificates (PEM, one or more) that sign the Redis server's certificate; replaces the system CAs. */
  ca?: Pem;
  /** Client certificate (PEM) for a Redis that requires one (`tls-auth-clients yes`); needs `key`. */
  cert?: Pem;
  /** Private key (PEM, unencrypted) of `cert`. */
  key?: Pem;
}

/**
 * Why `tls` cannot be used with the Redis `url` (one URL, or a
 * comma-separated list of cluster nodes), or undefined when it can: the
 * options take effect over `rediss://` only, and a client certificate comes
 * with its key.
 */
export function redisTlsProblem(url: string, tls: RedisTlsOptions | undefined): string | undefined {
  if (tls === undefined) return undefined;
  const given = tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined;
  if (!given) return undefined;
  const plain = url
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
    .some((entry) => !entry.toLowerCase().startsWith('rediss:'));
  if (plain) return 'TLS options are given but the Redis URL is redis://, which connects without TLS: use rediss://';
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    return tls.cert === undefined ? 'a client key needs its certificate (tls.cert)' : 'a client certificate needs its key (tls.key)';
  }
  return undefined;
}

/** The `tls.connect` options of a `rediss://` socket: only those given, so the system CAs stay the default. */
export function tlsSocketOptions(tls: RedisTlsOptions | undefined): { tls: true; ca?: Pem; cert?: Pem; key?: Pem } {
  return {
    tls: true,
    ...(tls?.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
    ...(tls?.key === undefined ? {} : { key: tls.key }),
  };
}

/** OpenSSL's verdicts on a peer certificate, as Node names them in `error.code`. */
const UNTRUSTED = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'INVALID_PURPOSE',
]);

/** OpenSSL's verdicts on a certificate of the chain that is signed as it should be but outside its validity. */
const OUT_OF_DATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

function stringField(error: unknown, field: 'code' | 'host'): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const value: unknown = Reflect.get(error, field);
  return typeof value === 'string' ? value : undefined;
}

const codeOf = (error: unknown) => stringField(error, 'code');

/**
 * Why the certificate does not fit the address it was reached at. Node's
 * error names that address (`host`); a cluster client reaches the nodes at
 * the addresses the cluster announces, which need not be the URL's host.
 */
function nameMismatch(error: unknown, message: string, cluster: boolean): string {
  const host = stringField(error, 'host');
  if (!cluster) return `the Redis server's certificate does not name the host of the URL${host === undefined ? '' : `, ${host}`} (${message})`;
  return (
    `the certificate of the Redis Cluster node at ${host ?? 'an address the cluster announced'} does not name that address (${message}): ` +
    "the cluster client reaches the nodes at the URL's hosts first, then at the addresses the cluster announces for them, " +
    'so the certificates must name those addresses too, or the cluster must announce host names they name ' +
    '(cluster-announce-hostname with cluster-preferred-endpoint-type hostname)'
  );
}

/**
 * A connection error that retrying cannot cure, as a message that says what
 * to fix, or undefined for any other error (Redis down, refused, slow): the
 * server's certificate is not trusted, has expired or is not yet valid, or
 * does not name the address it was reached at, or the TLS handshake itself
 * failed (a client certificate missing or refused, a `rediss://` URL on a
 * port without TLS). With `cluster` (default false) a name mismatch is told
 * as a node's: the address refused, and how the cluster client picks it.
 */
export function tlsRefusal(error: unknown, cluster = false): string | undefined {
  const code = codeOf(error);
  if (code === undefined) return undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (UNTRUSTED.has(code)) {
    return `the Redis server's certificate is not trusted (${message}): give the CA that signed it (tls.ca, --redis-tls-ca)`;
  }
  if (OUT_OF_DATE.has(code)) {
    return `the Redis server's certificate (or a CA certificate of its chain) has expired or is not yet valid (${message}): renew it, or check this machine's clock`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return nameMismatch(error, message, cluster);
  if (code.startsWith('ERR_SSL_')) return `the TLS handshake with Redis failed (${message})`;
  return undefined;
}

/** node-redis' messages for a connection the server closed under it. */
const CLOSED = /^(Socket closed unexpectedly|The client is closed)$/;

/**
 * For a `rediss://` link whose connection Redis cut right after it was
 * opened (reset or closed, without a TLS alert to say why), the likely
 * reason as a message, else undefined. Over TLS 1.3 a Redis that requires a
 * client certificate refuses a missing or unknown one only after the
 * client's side of the handshake is done: its alert arrives with the reset
 * of the connection, which can discard it.
 */
export function tlsClosedEarly(error: unknown): string | undefined {
  const code = codeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code !== 'ECONNRESET' && code !== 'EPIPE' && !CLOSED.test(message)) return undefined;
  return (
    `Redis closed the TLS connection as soon as it was made (${message}): it may require a client certificate ` +
    'that was not given or that it does not trust (tls.cert and tls.key, --redis-tls-cert and --redis-tls-key)'
  );
}
