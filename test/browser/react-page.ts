/**
 * The page of the React hook tests, bundled with esbuild by the test: each
 * `mount()` connects its own client (its own lock holder) and renders a
 * component using `useLock` and `useLockState` in strict mode, which mounts
 * every effect twice. `mountPair()` renders two such components on one
 * client. Components report their state in `data-*` attributes.
 */
import { LockClient } from '@lockwire/client';
import { LockClientProvider, useLock, useLockState } from '@lockwire/client/react';
import { StrictMode, createElement } from 'react';
import { flushSync } from 'react-dom';
import { createRoot, type Root } from 'react-dom/client';

interface Mounted {
  root: Root;
  client: LockClient;
  /** Renders the view again with `auto` (a view of `mount()`). */
  render?: (auto: boolean) => void;
}

/** Every status each view rendered, in order, by view name. */
const rendered = new Map<string, string[]>();

function LockView(props: { lockKey: string; name: string; auto: boolean }) {
  const lock = useLock(props.lockKey, { auto: props.auto, meta: { name: props.name } });
  rendered.set(props.name, [...(rendered.get(props.name) ?? []), lock.status]);
  const watched = useLockState(props.lockKey);
  const holder = watched.status === 'ready' ? (watched.holders[0]?.meta?.['name'] ?? '') : '';
  return createElement(
    'div',
    {
      className: 'lock',
      'data-status': lock.status,
      'data-position': lock.status === 'waiting' ? String(lock.position) : '',
      'data-token': lock.status === 'held' ? String(lock.token) : '',
      'data-reason': lock.status === 'lost' ? lock.reason : '',
      'data-watch': watched.status,
      'data-holder': String(holder),
      'data-waiters': watched.status === 'ready' ? String(watched.waiters) : '',
    },
    createElement('button', { className: 'acquire', onClick: () => lock.acquire() }, 'acquire'),
    createElement('button', { className: 'release', onClick: () => void lock.release() }, 'release'),
  );
}

const mounted = new Map<string, Mounted>();

const api = {
  /** Connects a client and renders a lock view as `#<name>`. */
  async mount(name: string, url: string, key: string, auto = true): Promise<string> {
    const client = await LockClient.connect(url);
    const host = document.createElement('div');
    host.id = name;
    document.body.append(host);
    const root = createRoot(host);
    const render = (auto: boolean) =>
      root.render(
        createElement(StrictMode, null, createElement(LockClientProvider, { client }, createElement(LockView, { lockKey: key, name, auto }))),
      );
    render(auto);
    mounted.set(name, { root, client, render });
    return client.session;
  },
  /**
   * Renders `#<name>`'s view again with `auto`, its effects run before this returns (`flushSync`), and
   * resolves with every status the view rendered from then on, after a round trip of its client to the server.
   */
  async setAuto(name: string, auto: boolean): Promise<string[]> {
    const view = mounted.get(name);
    if (!view?.render) throw new Error(`no view ${name}`);
    const before = rendered.get(name)?.length ?? 0;
    flushSync(() => view.render?.(auto));
    await view.client.ping();
    return (rendered.get(name) ?? []).slice(before);
  },
  /** Connects one client and renders two lock views of `key` on it, as `#<name>-1` and `#<name>-2`. */
  async mountPair(name: string, url: string, key: string): Promise<string> {
    const client = await LockClient.connect(url);
    const host = document.createElement('div');
    host.id = name;
    document.body.append(host);
    const root = createRoot(host);
    const views = [1, 2].map((n) =>
      createElement('div', { key: n, id: `${name}-${n}` }, createElement(LockView, { lockKey: key, name: `${name}-${n}`, auto: true })),
    );
    root.render(createElement(StrictMode, null, createElement(LockClientProvider, { client }, ...views)));
    mounted.set(name, { root, client });
    return client.session;
  },
  /** Unmounts `#<name>`'s component; the client stays connected. */
  unmount(name: string): void {
    mounted.get(name)?.root.unmount();
  },
};

(window as unknown as { reactTest: typeof api }).reactTest = api;
