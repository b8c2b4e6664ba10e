import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { fetchWithRefresh, watchLoggedOut } from '../src/browser.js';
import { onCleanup } from './helpers.js';

/**
 * tokenmint/browser's fetchWithRefresh on Node's own fetch and BroadcastChannel (no Web Locks here:
 * its single-flight within the page is what is left), against a real HTTP server whose API always
 * answers 401 and whose refresh route answers `refreshStatus`.
 */
async function backend(refreshStatus: number) {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (req.url === '/refresh') return void res.writeHead(refreshStatus, { 'content-type': 'application/json' }).end(JSON.stringify({ status: refreshStatus }));
    res.writeHead(401, { 'content-type': 'application/json' }).end('{"message":"not logged in"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise((resolve) => server.close(resolve)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** Every announcement heard on the channel during `action`, and a turn after it. */
async function announcementsDuring(action: () => Promise<unknown>): Promise<number> {
  let heard = 0;
  const stop = watchLoggedOut(() => heard++);
  try {
    await action();
    await new Promise((resolve) => setTimeout(resolve, 50));
    return heard;
  } finally {
    stop();
  }
}

describe('tokenmint/browser fetchWithRefresh', () => {
  it('a refresh route that answers 401 ends the session: announced once to every tab, onLoggedOut, the 401 returned', async () => {
    const { url, seen } = await backend(401);
    let loggedOut = 0;
    const options = { refreshUrl: `${url}/refresh`, onLoggedOut: () => loggedOut++ };
    let answers: Response[] = [];
    const heard = await announcementsDuring(async () => {
      answers = await Promise.all([fetchWithRefresh(`${url}/api/a`, {}, options), fetchWithRefresh(`${url}/api/b`, {}, options)]);
    });
    expect(answers.map((a) => a.status)).toEqual([401, 401]);
    expect(loggedOut).toBe(2);
    expect(heard).toBe(1); // one refresh for both requests, one announcement
    expect(seen.filter((s) => s === 'POST /refresh')).toHaveLength(1);
  });

  it('a refresh route that fails (5xx, 429) is not a logout: nothing announced, its answer returned, the next 401 refreshes again', async () => {
    for (const status of [500, 503, 429]) {
      const { url, seen } = await backend(status);
      let loggedOut = 0;
      const options = { refreshUrl: `${url}/refresh`, onLoggedOut: () => loggedOut++ };
      let answers: Response[] = [];
      const heard = await announcementsDuring(async () => {
        answers = await Promise.all([fetchWithRefresh(`${url}/api/a`, {}, options), fetchWithRefresh(`${url}/api/b`, {}, options)]);
      });
      expect(answers.map((a) => a.status)).toEqual([status, status]);
      expect(await Promise.all(answers.map((a) => a.json()))).toEqual([{ status }, { status }]); // each caller can read it
      expect([loggedOut, heard]).toEqual([0, 0]);
      await fetchWithRefresh(`${url}/api/c`, {}, options);
      expect(seen.filter((s) => s === 'POST /refresh')).toHaveLength(2);
    }
  });

  it('without a refreshUrl it rejects with a TypeError and sends nothing', async () => {
    const { url, seen } = await backend(204);
    for (const options of [undefined, {}, { refreshUrl: '' }]) {
      await expect(fetchWithRefresh(`${url}/api`, {}, options as never)).rejects.toThrow(new TypeError('fetchWithRefresh: options.refreshUrl is required'));
    }
    expect(seen).toEqual([]);
  });
});
