/** The two pages, as plain HTML. Every interpolated value goes through `esc`. */

export const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

function layout(title: string, body: string, script?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<link rel="stylesheet" href="/static/chat.css">
${script ? `<script type="module" src="${script}"></script>` : ''}
</head>
<body>
${body}
</body>
</html>`;
}

export function loginPage(csrf: string, error?: string, name = ''): string {
  const form = (action: string, label: string, id: string) => `
  <form method="post" action="${action}" id="${id}-form" class="card">
    <h2>${label}</h2>
    <input type="hidden" name="_csrf" value="${esc(csrf)}">
    <label>Name <input name="name" id="${id}-name" autocomplete="username" required maxlength="32" value="${esc(name)}"></label>
    <label>Password <input name="password" id="${id}-password" type="password" autocomplete="${id === 'register' ? 'new-password' : 'current-password'}" required minlength="8"></label>
    <button type="submit" id="${id}-submit">${label}</button>
  </form>`;
  return layout(
    'Mega chat — sign in',
    `<main class="auth">
  <h1>Mega chat</h1>
  ${error ? `<p class="error" id="auth-error">${esc(error)}</p>` : ''}
  <div class="forms">${form('/login', 'Log in', 'login')}${form('/register', 'Register', 'register')}</div>
</main>`,
  );
}

export function chatPage(csrf: string, userName: string): string {
  return layout(
    'Mega chat',
    `<header>
  <h1>Mega chat</h1>
  <span id="me">${esc(userName)}</span>
  <span id="status" data-state="connecting">connecting…</span>
  <form method="post" action="/logout"><input type="hidden" name="_csrf" value="${esc(csrf)}"><button id="logout">Log out</button></form>
</header>
<main class="chat">
  <section class="room">
    <ol id="messages" aria-live="polite"></ol>
    <form id="send-form" autocomplete="off">
      <input id="text" maxlength="2000" placeholder="Say something" required>
      <button type="submit" id="send">Send</button>
    </form>
  </section>
  <aside>
    <h2>Online</h2>
    <ul id="members"></ul>
    <h2>Activity</h2>
    <ul id="notices"></ul>
  </aside>
</main>`,
    '/static/chat.js',
  );
}
