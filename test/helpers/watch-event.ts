import type { LockClient, LockEvent } from '@lockwire/client';

/**
 * Starts a watch of `key` on `watcher` now, before the action a test takes,
 * and returns a function that resolves the first event on `key` matching
 * `match` (bounded: rejects after `timeoutMs`), then closes the watch.
 */
export async function watchForEvent(
  watcher: LockClient,
  key: string,
  match: (event: LockEvent) => boolean,
  timeoutMs = 10_000,
): Promise<() => Promise<LockEvent>> {
  let resolveEvent: (event: LockEvent) => void = () => undefined;
  const seen = new Promise<LockEvent>((resolve) => {
    resolveEvent = resolve;
  });
  const watch = await watcher.watch(key, (event) => {
    if (event.key === key && match(event)) resolveEvent(event);
  });
  return async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        seen,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`no event on ${key} within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      await watch.close();
    }
  };
}
