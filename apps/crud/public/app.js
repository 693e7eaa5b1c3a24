// The app page: my notes through the JSON API, and the chat over /ws/chat (sealed with this session's
// ASP key, fetched over HTTP).
import { AspClient, aspSocket } from '/asp-client.js';

const NS = '/ws/chat';
const $ = (id) => document.getElementById(id);
const status = (state, text) => {
  $('status').dataset.state = state;
  $('status').textContent = text;
};
const item = (cls, ...children) => {
  const li = document.createElement('li');
  li.className = cls;
  li.append(...children);
  return li;
};
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  e.textContent = text;
  return e;
};

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = res.status === 204 ? {} : await res.json();
  if (!res.ok) throw new Error(json.error?.message ?? `HTTP ${res.status}`);
  return json.data;
}

// ---- notes ----
let nextCursor = null;

function noteItem(n) {
  const li = item('note', el('b', 'title', n.title), ' ', el('span', 'body', n.body));
  li.dataset.id = n.id;
  return li;
}

async function loadNotes(more = false) {
  const page = await api('GET', `/api/notes?limit=10${more && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : ''}`);
  if (!more) $('notes').replaceChildren();
  for (const n of page.items) $('notes').append(noteItem(n));
  nextCursor = page.nextCursor;
  $('notes-more').hidden = !nextCursor;
}

$('note-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const title = $('note-title').value.trim();
  if (!title) return;
  try {
    const note = await api('POST', '/api/notes', { title, body: $('note-body').value });
    $('notes').prepend(noteItem(note));
    $('note-title').value = '';
    $('note-body').value = '';
  } catch (error) {
    notice(`note not saved: ${error.message}`);
  }
});
$('notes-more').addEventListener('click', () => loadNotes(true));

// ---- chat ----
function addMessage(m) {
  const time = el('time', '', new Date(m.ts).toLocaleTimeString());
  const li = item('msg', el('b', '', m.userName), ' ', el('span', 'text', m.text), ' ', time);
  li.dataset.user = m.userName;
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
}

const setMembers = (names) => $('members').replaceChildren(...names.map((n) => item('member', n)));
function notice(text) {
  $('notices').prepend(item('notice', text));
}

async function chat(key) {
  const asp = await AspClient.create(key);
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${NS}`, ['mega.v1']);
  const sock = aspSocket(ws, asp, NS, {
    onMessage(m) {
      if (m.type === 'chat.history') {
        $('messages').replaceChildren();
        for (const entry of m.payload.items) addMessage(entry);
        setMembers(m.payload.members);
      } else if (m.type === 'chat.msg') addMessage(m.payload);
      else if (m.type === 'chat.presence') {
        setMembers(m.payload.members);
        notice(`${m.payload.userName} ${m.payload.event === 'join' ? 'joined' : 'left'}`);
      } else if (m.type === 'error') notice(`error: ${m.payload.code} ${m.payload.message}`);
    },
    onError(error) {
      notice(`could not open a frame: ${error.code ?? error}`);
    },
  });
  ws.addEventListener('open', () => status('open', 'online'));
  ws.addEventListener('close', (e) => status('closed', `disconnected (${e.code})`));
  let seq = 0;
  $('send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value.trim();
    if (!text) return;
    $('text').value = '';
    sock.send({ type: 'chat.send', id: `c${++seq}`, payload: { text } });
  });
}

async function main() {
  const res = await fetch('/api/me', { credentials: 'same-origin' });
  if (res.status === 401) return location.assign('/');
  const { data } = await res.json();
  await Promise.all([loadNotes(), chat(data.keys.ws)]);
}

main().catch((error) => status('error', `error: ${error.message ?? error}`));
