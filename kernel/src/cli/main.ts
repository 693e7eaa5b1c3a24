/** `mega` command-line entry: dispatches subcommands; each command module is imported on demand. */
import type { CliIO } from './io.js';

const HELP = `Usage: mega <command> [options]

Commands:
  new <dir>             create a project outside or inside the checkout (--template api|chat|crud)
  start                 boot the project in this directory (--port, --workers, --app, --watch)
  plugin add <name>     install a plugin and its dependencies, add them to mega.config.ts
  plugin remove <name>  remove a plugin (refused while another depends on it)
  plugin list           installed and available plugins
  generate <kind> <n>   write a controller, route, channel, job, plugin, test, ... and its test (alias g)
  console               a REPL with the project booted, not listening: getApp(), app.db(), ctx (alias c)
  test [vitest args]    run the project's tests with vitest and @mega/testing
  routes                every route with its handler, middleware and plugin routes (--json)
  doctor                Node, package versions, native codec, services and config in one screen
  bench <target>        run a benchmark: codec in process; http, ws, jobs, ... inside the Mega repo
  help [command]        show help

Plugins add commands of their own (e.g. ws-hub from @mega/hub-bridge); inside a project,
"mega help" lists them.

Run "mega <command> --help" for a command's options.`;

/**
 * A reader that closes early (`mega plugin list | head`) makes the next write fail with EPIPE,
 * which Node raises as an uncaught 'error' event: swallow it once here, stop writing to that
 * stream, and let the command finish with its own exit code.
 */
const closed = new Set<NodeJS.WriteStream>();
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    closed.add(stream);
  });
}
const write = (stream: NodeJS.WriteStream, line: string) => {
  if (!closed.has(stream) && !stream.destroyed) stream.write(`${line}\n`);
};

const io: CliIO = {
  cwd: process.cwd(),
  stdout: (s) => write(process.stdout, s),
  stderr: (s) => write(process.stderr, s),
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // mega doctor reports the Node version as a FAIL line of its own.
  if (command !== 'doctor') {
    const { nodeWarning } = await import('./node-check.js');
    const warning = nodeWarning();
    if (warning) io.stderr(warning);
  }
  switch (command) {
    case 'start': {
      const { startCommand } = await import('./start.js');
      return startCommand(rest, io);
    }
    case 'plugin': {
      const { pluginCommand } = await import('./plugin-cmd.js');
      return pluginCommand(rest, io);
    }
    case 'new': {
      const { newCommand } = await import('./new.js');
      return newCommand(rest, io);
    }
    case 'routes': {
      const { routesCommand } = await import('./routes.js');
      return routesCommand(rest, io);
    }
    case 'generate':
    case 'g': {
      const { generateCommand } = await import('./generate.js');
      return generateCommand(rest, io);
    }
    case 'console':
    case 'c': {
      const { consoleCommand } = await import('./console.js');
      return consoleCommand(rest, io);
    }
    case 'test': {
      const { testCommand } = await import('./test.js');
      return testCommand(rest, io);
    }
    case 'bench': {
      const { benchCommand } = await import('./bench.js');
      return benchCommand(rest, io);
    }
    case 'doctor': {
      const { doctorCommand } = await import('./doctor.js');
      return doctorCommand(rest, io);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      if (rest[0]) return main([rest[0], '--help']);
      io.stdout(HELP);
      await import('./contributed.js').then((m) => m.listCommands(io));
      return command === undefined ? 2 : 0;
    case '--version':
    case '-v': {
      const { KERNEL_VERSION } = await import('../kernel.js');
      io.stdout(KERNEL_VERSION);
      return 0;
    }
    default: {
      const { runContributed } = await import('./contributed.js');
      const code = await runContributed(command, rest, io);
      if (code !== undefined) return code;
      io.stderr(`mega: unknown command "${command}"\n\n${HELP}`);
      return 2;
    }
  }
}

const argv0 = process.argv[2];
main(process.argv.slice(2)).then(
  (code) => {
    // `start` resolves only when it failed or the cluster primary finished; `doctor` may leave a
    // service's sockets open after a timed-out check, `console` its REPL's stdin: end the process then.
    if (argv0 === 'start' || argv0 === 'doctor' || argv0 === 'console' || argv0 === 'c') process.exit(code);
    process.exitCode = code;
  },
  async (error: unknown) => {
    const { formatError, CliUsageError } = await import('./start.js');
    if (error instanceof CliUsageError || (error as { code?: string })?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      io.stderr(`mega: ${(error as Error).message}`);
      process.exitCode = 2;
      return;
    }
    io.stderr(formatError(error));
    process.exitCode = 1;
  },
);
