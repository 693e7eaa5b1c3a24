document.getElementById('who')?.addEventListener('click', async () => {
  const res = await fetch('/whoami', { headers: { accept: 'application/json' } });
  document.getElementById('out').textContent = JSON.stringify((await res.json()).data);
});
