/**
 * `mega generate channel <Name> [--app <app>]`: a channel class (channels/<name>.ts), the route
 * file that mounts it with a schema per message type (routes/<name>-channel.ts), and a test that
 * connects to it (test/<name>-channel.test.ts). Files go in the app's folder (the project root of a
 * single-app project, apps/<app>/ otherwise).
 */
import type { Generator } from '@mega/kernel';
import { ValidationError } from '@mega/kernel';

/** `ChatRoom`, `chat-room`, `ChatRoomChannel` -> ['chat', 'room']; a name must start with a letter. */
export function channelWords(raw: string): string[] {
  const words = raw
    .replace(/Channel$/, '')
    .split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  if (!/^[a-z]/.test(words[0] ?? '')) {
    throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable channel name: start with a letter (e.g. ChatRoom)`);
  }
  return words;
}

const channelSource = (cls: string, type: string) => `import type { MegaContext } from '@mega/kernel';
import type { Channel, CloseInfo, WsConnection, WsMessage } from '@mega/ws';

// One instance per connection. A method named by a dotted message type handles that type (its payload
// is checked against the schema in the route file first); other methods are never dispatched.
export class ${cls}Channel implements Channel {
  onConnect(sock: WsConnection, ctx: MegaContext) {
    sock.send({ type: '${type}.welcome', payload: { app: ctx.app.name } });
  }

  '${type}.echo'(sock: WsConnection, msg: WsMessage<{ text: string }>) {
    // Answers carry the request's id, so a client can match them (WsClient.request in tests).
    sock.send({ type: '${type}.echo', id: msg.id ?? null, payload: { text: msg.payload?.text } });
  }

  onDisconnect(_sock: WsConnection, ctx: MegaContext, info: CloseInfo) {
    ctx.log.debug({ code: info.code }, '${cls}Channel: connection closed');
  }
}
`;

const routeSource = (cls: string, file: string, type: string) => `import type { Router } from '@mega/http';
import type {} from '@mega/ws'; // adds router.ws
import { ${cls}Channel } from '../channels/${file}.js';

export default (router: Router) => {
  router.ws('/ws/${file}', ${cls}Channel, {
    // One JSON Schema per message type: a frame that breaks it gets an error envelope, never reaching the channel.
    schemas: {
      '${type}.echo': {
        type: 'object',
        required: ['text'],
        additionalProperties: false,
        properties: { text: { type: 'string', maxLength: 1000 } },
      },
    },
  });
};
`;

const testSource = (cls: string, file: string, type: string, app: string | undefined) => `import { fileURLToPath } from 'node:url';
import { type Booted, bootProject, stopAll } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let booted: Booted;
let host: string | undefined;
beforeAll(async () => {
  booted = await bootProject(fileURLToPath(new URL('..', import.meta.url))${app ? `, { apps: ['${app}'] }` : ''});
  host = ${app ? `booted.kernel.apps.find((a) => a.name === '${app}')` : 'booted.kernel.apps[0]'}?.hosts[0];
});
afterAll(stopAll);

describe('${cls}Channel on /ws/${file}', () => {
  it('welcomes a connection, echoes ${type}.echo and refuses a payload that breaks its schema', async () => {
    const ws = await booted.ws('/ws/${file}', host ? { headers: { host } } : {});
    expect((await ws.next('${type}.welcome')).payload).toEqual({ app: booted.kernel.apps[0]?.name });
    expect((await ws.request('${type}.echo', { text: 'hi' })).payload).toEqual({ text: 'hi' });
    const refused = await ws.request('${type}.echo', { text: 42 });
    expect(refused.type).toBe('error');
    await ws.close();
  });
});
`;

export const channelGenerator: Generator = {
  summary: 'a WebSocket channel (channels/<name>.ts), its route with message schemas (routes/<name>-channel.ts) and its test',
  async run(name, project, options) {
    const words = channelWords(name);
    const app = typeof options.app === 'string' ? options.app : undefined;
    if (app !== undefined && !/^[a-z0-9][a-z0-9_-]*$/.test(app)) {
      throw new ValidationError('generate.invalid_app', `--app "${app}" is not an app directory name (apps/<name>)`);
    }
    const base = app ? `apps/${app}/` : '';
    const file = words.join('-');
    const cls = words.map((w) => (w[0] as string).toUpperCase() + w.slice(1)).join('');
    const type = words.join('_');
    const files: Array<[string, string]> = [
      [`${base}channels/${file}.ts`, channelSource(cls, type)],
      [`${base}routes/${file}-channel.ts`, routeSource(cls, file, type)],
      [`test/${file}-channel.test.ts`, testSource(cls, file, type, app)],
    ];
    for (const [path, content] of files) {
      if (!(await project.writeFileIfMissing(path, content))) project.log(`${path} exists; left as it is`);
    }
  },
};
