import type { Handler } from '@mega/http';
import { ValidationError } from '@mega/kernel';

export class HelloController {
  static home: Handler = async (_req, _reply, ctx) => ({ message: 'Hello from Mega', app: ctx.app.name });

  static greet: Handler = async (req) => {
    const { name } = req.params as { name: string };
    if (name.length > 64) throw new ValidationError('validation.name_too_long', 'name must be at most 64 characters');
    return { message: `Hello, ${name}` };
  };

  /** Echoes the JSON body back inside the envelope. */
  static echo: Handler = async (req) => ({ echo: req.body });
}
