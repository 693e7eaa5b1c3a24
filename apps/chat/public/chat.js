// The chat page: fetch this session's ASP key over HTTP, open /ws/chat, and speak sealed envelopes.
import { AspClient, aspSocket } from '/asp-client.js';

const NS = '/ws/chat';
const $ = (id) => document.getElementById(id);
const status = (state, text) => {
  $('status').dataset.state = state;
  $('status').textContent = text;
};

function addMessage(m) {
  const li = document.createElement('li');
  li.className = 'msg';
  li.dataset.user = m.userName;
  const who = document.createElement('b');
  who.textContent = m.userName;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = m.text;
  const time = document.createElement('time');
  time.textContent = new Date(m.ts).toLocaleTimeString();
  li.append(who, ' ', text, ' ', time);
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
}

function setMembers(names) {
  $('members').replaceChildren(
    ...names.map((n) => {
      const li = document.createElement('li');
      li.textContent = n;
      return li;
    }),
  );
}

function notice(text) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.textContent = text;
  $('notices').prepend(li);
}

async function main() {
  const res = await fetch('/api/me', { credentials: 'same-origin' });
  if (res.status === 401) return location.assign('/');
  const { data } = await res.json();
  const asp = await AspClient.create(data.keys.ws);
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${NS}`, ['mega.v1']);
  const sock = aspSocket(ws, asp, NS, {
    onMessage(m) {
      if (m.type === 'chat.history') {
        $('messages').replaceChildren();
        for (const item of m.payload.items) addMessage(item);
        setMembers(m.payload.members);
      } else if (m.type === 'chat.message') addMessage(m.payload);
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

main().catch((error) => status('error', `error: ${error.message ?? error}`));
