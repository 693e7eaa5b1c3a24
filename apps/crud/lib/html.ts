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
<link rel="stylesheet" href="/static/crud.css">
${script ? `<script type="module" src="${script}"></script>` : ''}
</head>
<body>
${body}
</body>
</html>`;
}

export interface FormState {
  error?: string;
  email?: string;
  name?: string;
}

export function homePage(csrf: string, state: FormState = {}): string {
  const token = `<input type="hidden" name="_csrf" value="${esc(csrf)}">`;
  return layout(
    'Mega notes — sign in',
    `<main class="auth">
  <h1>Mega notes</h1>
  ${state.error ? `<p class="error" id="auth-error">${esc(state.error)}</p>` : ''}
  <div class="forms">
  <form method="post" action="/login" id="login-form" class="card">
    <h2>Log in</h2>${token}
    <label>Email <input name="email" id="login-email" type="email" autocomplete="username" required maxlength="320" value="${esc(state.email ?? '')}"></label>
    <label>Password <input name="password" id="login-password" type="password" autocomplete="current-password" required></label>
    <button type="submit" id="login-submit">Log in</button>
  </form>
  <form method="post" action="/register" id="register-form" class="card">
    <h2>Register</h2>${token}
    <label>Email <input name="email" id="register-email" type="email" autocomplete="email" required maxlength="320" value="${esc(state.email ?? '')}"></label>
    <label>Name <input name="name" id="register-name" autocomplete="nickname" required maxlength="64" value="${esc(state.name ?? '')}"></label>
    <label>Password <input name="password" id="register-password" type="password" autocomplete="new-password" required minlength="8" maxlength="200"></label>
    <button type="submit" id="register-submit">Register</button>
  </form>
  </div>
</main>`,
  );
}

export function appPage(csrf: string, userName: string): string {
  return layout(
    'Mega notes',
    `<header>
  <h1>Mega notes</h1>
  <span id="me">${esc(userName)}</span>
  <span id="status" data-state="connecting">connecting…</span>
  <form method="post" action="/logout"><input type="hidden" name="_csrf" value="${esc(csrf)}"><button id="logout">Log out</button></form>
</header>
<main class="app">
  <section class="notes">
    <h2>My notes</h2>
    <form id="note-form" autocomplete="off">
      <input id="note-title" maxlength="200" placeholder="Title" required>
      <textarea id="note-body" rows="3" placeholder="Text"></textarea>
      <button type="submit" id="note-add">Add</button>
    </form>
    <ol id="notes"></ol>
    <button id="notes-more" hidden>More</button>
  </section>
  <section class="room">
    <h2>Chat</h2>
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
    '/static/app.js',
  );
}
