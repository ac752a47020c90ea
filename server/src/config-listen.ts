/**
 * Faults of the `host` and `port` settings that only show when the server
 * listens: a busy port, an address not on this machine, a name that does not
 * resolve. They are the operator's to fix like any invalid setting, so the
 * CLI reports them the same way (one line naming the setting, exit 2)
 * instead of as a crash.
 */

/** The listen settings a fault is checked against. */
export interface ListenSettings {
  host: string;
  port: number;
}

/** What a failed `listen` or its host lookup carries (`NodeJS.ErrnoException` plus the lookup's `hostname`). */
interface ListenError {
  code?: unknown;
  syscall?: unknown;
  hostname?: unknown;
}

/** Causes of a failed `listen(2)` that the host or port setting decides, and which setting names them. */
const listenCauses: Readonly<Record<string, (settings: ListenSettings) => { key: 'host' | 'port'; cause: string }>> = {
  EADDRINUSE: ({ host, port }) => ({ key: 'port', cause: `port ${port} is already in use on ${host}` }),
  EACCES: ({ host, port }) => ({ key: 'port', cause: `port ${port} on ${host} cannot be listened on: permission denied (EACCES)` }),
  EADDRNOTAVAIL: ({ host }) => ({
    key: 'host',
    cause: `host ${host} cannot be listened on: the address is not on this machine (EADDRNOTAVAIL)`,
  }),
};

function fields(error: unknown): ListenError | undefined {
  return typeof error === 'object' && error !== null ? (error as ListenError) : undefined;
}

/**
 * The one-line problem of a failed start that the `host` or `port` setting
 * caused, as `resolveConfig` words its errors: the setting's source (from
 * `describe`, e.g. `--port` or `LOCKWIRE_PORT`), its value, and the cause,
 * e.g. `--port "8080": port 8080 is already in use on 127.0.0.1`.
 * Undefined for any other failure (a store that cannot connect, a lookup of
 * another name, a temporary DNS failure such as `EAI_AGAIN`): those are
 * runtime failures, not settings to fix.
 */
export function listenProblem(
  error: unknown,
  settings: ListenSettings,
  describe: (key: 'host' | 'port') => string,
): string | undefined {
  const fault = fields(error);
  if (fault === undefined || typeof fault.code !== 'string') return undefined;
  let found: { key: 'host' | 'port'; cause: string } | undefined;
  if (fault.syscall === 'listen') {
    found = listenCauses[fault.code]?.(settings);
  } else if (fault.syscall === 'getaddrinfo' && fault.code === 'ENOTFOUND' && fault.hostname === settings.host) {
    // Only the lookup of the host setting itself: a store resolving its own
    // host fails with the same code.
    found = { key: 'host', cause: `host ${settings.host} cannot be listened on: the name does not resolve (ENOTFOUND)` };
  }
  if (found === undefined) return undefined;
  return `${describe(found.key)} ${JSON.stringify(String(settings[found.key]))}: ${found.cause}`;
}
