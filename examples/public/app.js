// The page: every API call goes through fetchWithRefresh. The tokens stay in HttpOnly cookies,
// out of reach of this script (and of any script injected into the page).
import { announceLoggedOut, fetchWithRefresh, watchLoggedOut } from '/tokenmint/browser.js';

const $ = (id) => document.getElementById(id);

function show(state, me) {
  $('login').hidden = state !== 'logged-out';
  $('app').hidden = state !== 'logged-in';
  if (me) {
    $('who').textContent = me.sub;
    $('ttl').textContent = String(Math.max(0, me.exp - Math.floor(Date.now() / 1000)));
  }
  document.body.dataset.state = state;
}

const api = (url, init) => fetchWithRefresh(url, init, { refreshUrl: '/auth/refresh', onLoggedOut: () => show('logged-out') });
// A tab that finds the session over (a refused refresh, a logout) tells the others: they show the login now.
watchLoggedOut(() => show('logged-out'));

/** Calls the protected API; the test drives this same function from two tabs. */
async function callApi() {
  const res = await api('/api/me');
  const body = await res.json().catch(() => null);
  if (res.ok) show('logged-in', body);
  $('out').textContent = `${new Date().toLocaleTimeString()} ${res.status}\n${JSON.stringify(body, null, 2)}`;
  return { status: res.status, body };
}
window.callApi = callApi;

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = new FormData(event.target).get('name');
  const res = await fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
  if (res.ok) await callApi();
});
$('call').addEventListener('click', () => callApi());

/** The user's sessions, one line each; every other one with a button that logs it out. */
async function showDevices() {
  const res = await api('/api/devices');
  if (!res.ok) return;
  const items = (await res.json()).map((device) => {
    const item = document.createElement('li');
    item.dataset.current = String(device.current);
    item.textContent = `${device.useragent ?? 'unknown browser'}, ${device.ip ?? 'unknown address'}, since ${new Date(device.created_at).toLocaleString()}`;
    if (device.current) item.append(' (this browser)');
    else {
      const logout = document.createElement('button');
      logout.textContent = 'Log out';
      logout.addEventListener('click', async () => {
        await api(`/api/devices/${encodeURIComponent(device.session_id)}/logout`, { method: 'POST' });
        await showDevices();
      });
      item.append(' ', logout);
    }
    return item;
  });
  $('devices').replaceChildren(...items);
}
$('devices-show').addEventListener('click', () => showDevices());
$('devices-logout-others').addEventListener('click', async () => {
  await api('/api/devices/logout-others', { method: 'POST' });
  await showDevices();
});
$('logout').addEventListener('click', async () => {
  await fetch('/auth/logout', { method: 'POST' });
  show('logged-out');
  announceLoggedOut();
});

// On load: already logged in (cookies from an earlier visit or another tab)?
const first = await callApi();
if (first.status === 401) show('logged-out');
