// The plugins' additions to ctx and the configs (ctx.session, ctx.presence, ctx.asp, ctx.csrfToken,
// ctx.jobs, ctx.models, ...) for the type checker; at run time mega.config.ts loads the plugins.
import type {} from '@mega/asp';
import type {} from '@mega/db-postgres';
import type {} from '@mega/http';
import type {} from '@mega/jobs';
import type {} from '@mega/lock';
import type {} from '@mega/migrations';
import type {} from '@mega/models';
import type {} from '@mega/scheduler';
import type {} from '@mega/security';
import type {} from '@mega/session';
import type {} from '@mega/ws';
import type {} from '@mega/ws-presence';
