/**
 * The exclusive-editing demo served at `GET /demo/editor?doc=<id>`: every
 * tab queues for the lock `doc:<id>` on load (no acquire timeout), with
 * meta `{user, tab}`. The tab holding it can type; the others are read-only
 * and show the holder's meta, which they learn from a watch on the key.
 * When the holder's tab closes or navigates away (also into the browser's
 * back/forward cache) its connection ends, the server releases the lock
 * and pushes the grant to the next tab in line: no polling, no reload; a
 * tab shown again from the cache queues anew. When the connection drops the client reconnects; with session
 * grace on it resumes the session, so the tab keeps the document it held
 * (while offline it is read-only). The text itself lives in this origin's
 * localStorage, so tabs of one browser see each other's edits; the lock
 * handoff is the point.
 */
import type { CloseInfo, Lease, ListResult, LockClient, LockEvent } from '@lockwire/client';
import { connectionEnd, connectPage, policyCloseOf, policyReconnectDelay, refusalOf } from './access.js';
import { acquireRefusal, retryDelay, RetryWait, type AcquireRefusal } from './acquire-refusal.js';
import { byId, displayKey, endpointUrl, formatDuration, formatMeta, setText, shortSession, withPageToken } from './format.js';
import { reconnectDelay } from './dashboard-support.js';

type Role = 'editing' | 'waiting' | 'readonly' | 'offline';

interface Editor {
  session: string;
  meta: Record<string, unknown> | null;
}

/** Events of the key after which a refused place in line may be free: a holder or a waiter left. */
const MAKES_ROOM: ReadonlySet<string> = new Set(['released', 'expired', 'stolen', 'revoked', 'dequeued']);

/**
 * The server refused the tab's watch of its document with `refusal`: without
 * the watch the tab cannot tell who edits, so the attempt ends (its client
 * closed) and `connectForever` decides whether to connect again.
 */
class WatchRefused extends Error {
  override readonly name = 'WatchRefused';
  readonly refusal: AcquireRefusal;

  constructor(refusal: AcquireRefusal, cause: unknown) {
    super(refusal.reason, { cause });
    this.refusal = refusal;
  }
}

/** Rethrows `error`, as a {@link WatchRefused} when it is the server's refusal of the watch. */
function refusedWatch(error: unknown): never {
  const refusal = acquireRefusal(error);
  throw refusal === undefined ? error : new WatchRefused(refusal, error);
}

const params = new URLSearchParams(location.search);
const doc = params.get('doc') || 'welcome';
const key = `doc:${doc}`;
const storageKey = `lockwire-demo:${key}`;
const tab = Math.random().toString(36).slice(2, 8);
const user = params.get('user') || rememberedUser();
// The key and the tab's own name as shown, escaped as the dashboard shows keys and meta: a doc id or user from
// the URL may hold control or bidi characters that would break or reorder the text around them.
const shownKey = displayKey(key);
const shownMe = formatMeta({ user, tab });

const el = {
  state: byId('conn-state', HTMLElement),
  docKey: byId('doc-key', HTMLElement),
  me: byId('me', HTMLElement),
  who: byId('who', HTMLElement),
  text: byId('text', HTMLTextAreaElement),
  dashboardLink: byId('dashboard-link', HTMLAnchorElement),
};

let current: LockClient | undefined;
/** This tab's session while its connection is open; `undefined` while it is offline. */
let mySession: string | undefined;
let editor: Editor | undefined;
let holding = false;
let position: number | undefined;
/** Set when the server refused the page's credentials: the page no longer connects, and says why. */
let accessRefused: string | undefined;
/** Set while the tab waits to reconnect after the server closed it for its conduct (sending too fast): why, and when. */
let closedFor: string | undefined;
/** The server's refusal of this tab's last acquire, and when it is asked again (`undefined`: never). */
let refused: { refusal: AcquireRefusal; retryIn: number | undefined } | undefined;
/**
 * The server's refusal of the last attempt's watch of the key, and when the
 * tab connects again (`undefined`: never, the refusal is final).
 */
let watchRefused: { refusal: AcquireRefusal; retryIn: number | undefined } | undefined;
const retryWait = new RetryWait();

function rememberedUser(): string {
  const stored = localStorage.getItem('lockwire-demo:user');
  if (stored) return stored;
  const made = `guest-${Math.random().toString(36).slice(2, 6)}`;
  localStorage.setItem('lockwire-demo:user', made);
  return made;
}

/** Who edits; `queued`: this tab waits in line, so someone does, though the page may not see who (a token without `watch`). */
function describe(holder: Editor | undefined, queued = false): string {
  if (!holder) return queued ? 'someone else' : 'nobody';
  return formatMeta(holder.meta) || `session ${shortSession(holder.session)}`;
}

function show(role: Role, text: string, refusedCode?: string): void {
  el.who.dataset.role = role;
  if (refusedCode === undefined) delete el.who.dataset.refused;
  else el.who.dataset.refused = refusedCode;
  setText(el.who, text);
  el.text.readOnly = role !== 'editing';
  document.title = `${role === 'editing' ? 'editing' : 'read-only'} · ${shownKey} · lockwire`;
}

function refresh(): void {
  if (!mySession && accessRefused === undefined && watchRefused) {
    const { refusal, retryIn } = watchRefused;
    show(retryIn === undefined ? 'readonly' : 'offline', watchRefusedText(refusal, retryIn), refusal.code);
  } else if (!mySession) {
    show('offline', accessRefused ?? closedFor ?? 'Not connected: reconnecting…');
  } else if (holding && current?.leases.has(key)) {
    // A hold kept through a drop is editable again once the resume gave it back (it is among the client's leases).
    show('editing', `You are editing ${shownKey} (${shownMe}).`);
  } else if (refused) {
    show('readonly', refusedText(refused.refusal, refused.retryIn), refused.refusal.code);
  } else {
    const line = position === undefined ? '' : ` You are number ${position} in line`;
    const role: Role = position === undefined ? 'readonly' : 'waiting';
    show(
      role,
      `Read-only: ${describe(editor, position !== undefined)} is editing.${line}${line ? '; you take over when the tabs ahead close.' : ''}`,
    );
  }
}

function refusedText(refusal: AcquireRefusal, retryIn: number | undefined): string {
  const editing = editor ? ` ${describe(editor)} is editing.` : '';
  if (retryIn === undefined) return `Read-only: you may not edit ${shownKey} (${refusal.code}: ${refusal.reason}).${editing}`;
  const sooner = refusal.wakesOnEvents ? ', or as soon as someone leaves the document or its line' : '';
  return (
    `Read-only:${editing || ' nobody is editing.'} This tab could not join the line (${refusal.code}: ${refusal.reason});` +
    ` trying again in ${formatDuration(retryIn)}${sooner}.`
  );
}

function watchRefusedText(refusal: AcquireRefusal, retryIn: number | undefined): string {
  const why = `${refusal.code}: ${refusal.reason}`;
  if (retryIn === undefined) return `Read-only: you may not edit ${shownKey}: the server refused to watch it (${why}).`;
  return `Not connected: the server refused to watch ${shownKey} (${why}); trying again in ${formatDuration(retryIn)}.`;
}

function onEvent(event: LockEvent): void {
  if (event.key !== key) return;
  if (MAKES_ROOM.has(event.event)) retryWait.wake();
  if (event.event === 'acquired') {
    editor = { session: event.session, meta: event.meta };
  } else if (['released', 'expired', 'stolen', 'revoked'].includes(event.event) && event.holders === 0) {
    editor = undefined;
  }
  refresh();
  // `queued` told the place once; the queue moves with grants and departures, so ask again.
  if (!holding && position !== undefined && current?.state === 'open') {
    current
      .status(key)
      .then((status) => {
        const place = status.queue.findIndex((waiter) => waiter.session === mySession);
        if (!holding && position !== undefined && place >= 0) {
          position = place + 1;
          refresh();
        }
      })
      .catch(() => undefined);
  }
}

/** Resolves true once `client` is open (at once if it is), false once it closed for good. */
function opened(client: LockClient): Promise<boolean> {
  if (client.state === 'open' || client.state === 'closed') return Promise.resolve(client.state === 'open');
  return new Promise((resolve) => {
    const off = client.on('state', (state) => {
      if (state !== 'open' && state !== 'closed') return;
      off();
      resolve(state === 'open');
    });
  });
}

/**
 * Holds the lock until it is lost (stolen, revoked, connection gone for
 * good); then queues again, once reconnected after a drop, until the client
 * closes. A drop with session grace on does not end a hold: the lease waits
 * for the resume. An acquire the server refuses is shown with its reason and
 * asked again after 250 ms doubling to 5 s (sooner at an event of the key
 * that may make room), except a refusal asking again cannot change
 * (`forbidden`): the tab then stays read-only for the client's life, drops
 * and resumes included (a new token takes a new page load).
 */
async function editWhileHolding(client: LockClient): Promise<void> {
  for (let refusals = 0; await opened(client); ) {
    position = undefined;
    let lease: Lease | null;
    try {
      lease = await client.acquire(key, {
        meta: { user, tab },
        onQueued: (place) => {
          refused = undefined;
          position = place;
          refresh();
        },
      });
    } catch (error) {
      // The connection dropped (the server let go of the tab's place in line): queue again once back.
      if (client.state !== 'open') continue;
      const refusal = acquireRefusal(error);
      if (refusal === undefined) throw error;
      const retryIn = refusal.final ? undefined : retryDelay(++refusals);
      refused = { refusal, retryIn };
      refresh();
      if (retryIn === undefined) return;
      await retryWait.wait(retryIn, refusal.wakesOnEvents);
      continue;
    }
    refusals = 0;
    refused = undefined;
    if (!lease) continue;
    holding = true;
    position = undefined;
    editor = { session: client.session, meta: { user, tab } };
    refresh();
    el.text.focus();
    await new Promise<void>((resolve) => {
      if (lease.signal.aborted) resolve();
      else lease.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    holding = false;
    refresh();
  }
}

/** Who edits, from a snapshot of the watch (the first, or a reconnect's). */
function showSnapshot(snapshot: ListResult): void {
  const holder = snapshot.locks.find((lock) => lock.key === key)?.holders[0];
  editor = holder ? { session: holder.session, meta: holder.meta } : undefined;
  refresh();
}

/** The connection is open (first, or again after a drop): the tab is online with the client's session. */
function online(client: LockClient): void {
  mySession = client.session;
  el.state.dataset.state = 'live';
  setText(el.state, 'live');
  refresh();
}

/**
 * The connection dropped and the client reconnects: the tab is read-only
 * until it is back. A final refusal (`forbidden`) is kept: the loop asking
 * for the lock has stopped, and the same token gets the same answer after
 * the reconnect, so the tab goes on saying why it may not edit.
 */
function offline(): void {
  mySession = undefined;
  position = undefined;
  if (refused?.retryIn !== undefined) refused = undefined;
  el.state.dataset.state = 'disconnected';
  setText(el.state, 'disconnected');
  refresh();
}

/**
 * One client's life, through drops it reconnects from, and how it ended.
 * Whatever ends it, the client is closed, so a failed attempt leaves no
 * session on the server.
 */
async function session(): Promise<CloseInfo> {
  const client = await connectPage(endpointUrl(location), location);
  try {
    const closed = new Promise<CloseInfo>((resolve) => client.on('close', resolve));
    current = client;
    // The prefix is the key itself; events of longer keys sharing it are skipped in onEvent.
    const watch = await client.watch(key, onEvent, { onResync: showSnapshot }).catch(refusedWatch);
    client.on('disconnect', ({ reconnecting }) => {
      if (reconnecting) offline();
    });
    // After the resume settled which leases the session kept.
    client.on('reconnect', () => online(client));
    showSnapshot(watch.snapshot);
    online(client);
    void editWhileHolding(client).catch(() => undefined);
    // A re-watch after a reconnect may be refused too.
    return await connectionEnd(client, watch, closed, location).catch(refusedWatch);
  } finally {
    await client.close().catch(() => undefined);
  }
}

/**
 * Connects, and again after every drop with backoff, until the server
 * refuses the page's credentials (a close with 1008 saying they expired or
 * are not valid, or a 401 for the page's own URL after a failed connect) or
 * refuses the watch of the document for good (`bad_request`, `forbidden`,
 * `unauthorized`: the same request gets the same answer): then the tab stays
 * read-only and says why. A watch refused for the moment (`store_unavailable`,
 * `shutting_down`, ...) is shown with its code and asked again after the
 * drop's backoff. After a close with 1008 for its conduct (sending too fast)
 * it says so and reconnects after a longer backoff, 5 s doubling to 60 s.
 */
async function connectForever(): Promise<void> {
  let policyCloses = 0;
  for (let attempt = 0; ; attempt++) {
    let ending: unknown;
    closedFor = undefined;
    watchRefused = undefined;
    try {
      ending = await session();
      attempt = 0;
    } catch (error) {
      // Any other failure is shown as offline; the next attempt follows the backoff.
      ending = error;
    }
    accessRefused = refusalOf(ending, location);
    const policyClose = policyCloseOf(ending);
    policyCloses = policyClose === undefined ? 0 : policyCloses + 1;
    const delay = policyClose === undefined ? reconnectDelay(attempt) : policyReconnectDelay(policyCloses - 1);
    if (policyClose !== undefined) closedFor = `${policyClose} Reconnecting in ${formatDuration(delay)}.`;
    if (ending instanceof WatchRefused) {
      watchRefused = { refusal: ending.refusal, retryIn: ending.refusal.final ? undefined : delay };
    }
    const stop = accessRefused !== undefined || (watchRefused !== undefined && watchRefused.retryIn === undefined);
    current = undefined;
    mySession = undefined;
    holding = false;
    position = undefined;
    refused = undefined;
    const state = stop ? 'refused' : 'disconnected';
    el.state.dataset.state = state;
    setText(el.state, state);
    refresh();
    if (stop) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

el.dashboardLink.href = withPageToken('/', location);
setText(el.docKey, shownKey);
setText(el.me, shownMe);
el.text.value = localStorage.getItem(storageKey) ?? `Shared notes for ${shownKey}.\n`;
el.text.addEventListener('input', () => {
  if (holding) localStorage.setItem(storageKey, el.text.value);
});
// Other tabs of this browser write the text; the storage event carries it here.
window.addEventListener('storage', (event) => {
  if (event.key === storageKey && event.newValue !== null && !holding) el.text.value = event.newValue;
});
refresh();
void connectForever();
