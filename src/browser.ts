// tokenmint/browser — for the page: fetch that refreshes the cookie session once on a 401.
// Imports nothing; serve dist/browser.js as it is, or bundle it.
//
// Why the coordination: every tab of a site shares one refresh cookie. Two tabs that refresh it at
// once present the same refresh token twice — answered from the reuse grace at best, reuse (the
// session revoked) once the grace is over. So one refresh is in flight at a time per origin (a Web
// Lock), and the tab that waited sends the cookies the first one got back: the refresh route sees a
// valid access token and has nothing to renew (tokenmint/hono's `refresh` answers at once).
// When the session is over, the tab that found out tells the others (a BroadcastChannel), so they
// show the login at once instead of at their next call.

export interface FetchWithRefreshOptions {
  /**
   * Your backend's refresh route (POST), e.g. one that calls tokenmint/hono's `refresh(c)`: 2xx when
   * it renewed, 401 when the session is over.
   */
  refreshUrl: string | URL;
  /** Called when the refresh route answers 401: the session is over, show the login. */
  onLoggedOut?: () => void;
}

const LOCK = 'tokenmint-refresh';
const CHANNEL = 'tokenmint-session';
const LOGGED_OUT = 'logged-out';

/**
 * Tells every tab of the origin (this one included) that the session is over, through
 * `watchLoggedOut`. fetchWithRefresh does it when the refresh route answers 401; call it after your own
 * logout. Without BroadcastChannel it does nothing.
 */
export function announceLoggedOut(): void {
  if (typeof BroadcastChannel === 'undefined') return;
  const channel = new BroadcastChannel(CHANNEL);
  channel.postMessage(LOGGED_OUT);
  channel.close();
}

/**
 * Calls `callback` whenever a tab of the origin (this one included) announces that the session is
 * over: show the login. Returns a function that stops watching.
 */
export function watchLoggedOut(callback: () => void): () => void {
  if (typeof BroadcastChannel === 'undefined') return () => {};
  const channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = (event: MessageEvent) => {
    if (event.data === LOGGED_OUT) callback();
  };
  return () => channel.close();
}

// The refresh this page is running or waiting for; requests that fail meanwhile join it.
let pageRefresh: Promise<Response> | undefined;

/**
 * The refresh route's answer (shared: read it through a clone). A 401, the session over, is announced
 * once; a failure (5xx, 429) is not a logout and is announced to no one.
 */
function refreshOnce(refreshUrl: string | URL): Promise<Response> {
  const refresh = () => fetch(refreshUrl, { method: 'POST', credentials: 'include' });
  // Web Locks span every tab of the origin (secure contexts, localhost included); without them the
  // page's own single-flight, and tokenmint's reuse grace, are what is left.
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  const underLock = async (): Promise<Response> => (locks ? await locks.request(LOCK, refresh) : refresh());
  pageRefresh ??= underLock()
    .then((answer) => {
      if (answer.status === 401) announceLoggedOut();
      return answer;
    })
    .finally(() => (pageRefresh = undefined));
  return pageRefresh;
}

/**
 * `fetch` with the cookies sent (`credentials: 'include'` unless `init` says otherwise). On a 401 it
 * refreshes the session once — one refresh in flight per page and across tabs — and retries the
 * request once. If the refresh route answers 401, it announces it to every tab (announceLoggedOut),
 * calls `onLoggedOut` and returns the request's 401. If the refresh route fails otherwise (5xx, 429:
 * your backend or tokenmint down, not a logout), it returns that answer and the session stays.
 * A network error rejects, as fetch does. A body that is a ReadableStream cannot be sent twice:
 * pass a string, Blob, FormData or URLSearchParams.
 */
export async function fetchWithRefresh(input: RequestInfo | URL, init: RequestInit = {}, options: FetchWithRefreshOptions): Promise<Response> {
  // Misuse is a TypeError at once, not a first 401 followed by a POST to "undefined".
  if (options?.refreshUrl === undefined || options.refreshUrl === '') throw new TypeError('fetchWithRefresh: options.refreshUrl is required');
  const withCookies: RequestInit = { credentials: 'include', ...init };
  const retryInput = input instanceof Request ? input.clone() : input;
  const first = await fetch(input, withCookies);
  if (first.status !== 401) return first;
  const refreshed = await refreshOnce(options.refreshUrl);
  if (refreshed.ok) return fetch(retryInput, withCookies);
  if (refreshed.status !== 401) return refreshed.clone();
  options.onLoggedOut?.();
  return first;
}
