/** The object route files receive: `export default (router) => { router.http.get('/', Home.index) }`. */
import type { App, MegaContext, RouteDefinition, RouteOptions } from '@mega/kernel';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** A controller: `(req, reply, ctx)`. Its return value is enveloped as `{ data }`. */
export type Handler = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext) => unknown;

/**
 * Middleware, same signature as a controller. `before` middleware stops the request by sending a
 * reply (`reply.code(401).send(...)`) or throwing a MegaError.
 */
export type Middleware = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext) => unknown;

/** Runs on the controller's result before the envelope; returning a value other than `undefined` replaces it. */
export type Transform = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext, result: unknown) => unknown;

/** Runs after the response went out (audit, metrics); cannot change it, errors are logged. */
export type After = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext, result: unknown) => unknown;

/**
 * App-wide `send` phase: runs as each response of the app goes out (routes, errors, 404s, static
 * files) to set headers. Synchronous; `ctx` is undefined when the request never reached a route.
 */
export type Send = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext | undefined) => void;

/** Options of one HTTP route (the kernel's RouteOptions, typed for HTTP). */
export interface HttpRouteOptions extends RouteOptions {
  before?: readonly Middleware[];
  transform?: readonly Transform[];
  after?: readonly After[];
  /** Fastify JSON schemas: `body`, `querystring` (or `query`), `params`, `headers`, `response`. */
  schema?: Record<string, unknown>;
  /** Body limit of this route in bytes. */
  bodyLimit?: number;
  /**
   * Send `Cache-Control: no-store` on every answer of this route (its errors too): for routes that
   * hand out keys, tokens or other secrets. Inside a handler, `noStore(reply)` does the same.
   */
  noStore?: boolean;
  /** Extra content types this route takes, as a text `req.body` (e.g. `application/x-mega-asp`); others get 415. */
  bodyTypes?: readonly string[];
}

/** App-wide middleware declared in a route file with `router.http.use(...)`. */
export interface AppMiddleware {
  before?: Middleware | readonly Middleware[];
  transform?: Transform | readonly Transform[];
  after?: After | readonly After[];
}

type Method = (path: string, handler: Handler, options?: HttpRouteOptions) => void;

export interface HttpMethods {
  get: Method;
  post: Method;
  put: Method;
  patch: Method;
  delete: Method;
  head: Method;
  options: Method;
  route(method: string | string[], path: string, handler: Handler, options?: HttpRouteOptions): void;
  /** Middleware for every route of this app (all route files), run before the route's own. */
  use(middleware: Middleware | AppMiddleware): void;
}

/** Other plugins add members (e.g. `router.ws`) by declaration merging plus `HttpServer.extendRouter`. */
export interface Router {
  readonly app: App;
  readonly http: HttpMethods;
}

/**
 * A `router.<kind>` member added by another plugin (`http.extendRouter(kind, extension)`), e.g.
 * `router.ws`: the one extension channel besides the `route` hook and the phases.
 */
export interface RouterExtension {
  /** Builds the member for one app; `add` queues a definition of this kind for the `route` hook. */
  router(app: App, add: (def: Omit<RouteDefinition, 'app' | 'meta' | 'kind'> & { meta?: Record<string, unknown> }) => void): unknown;
  /**
   * Makes Fastify route each definition of this kind (after the `route` hook) to the returned
   * handler, behind the app's `request` and `before` phases. Without it the definitions are only
   * listed in `http.routes` for their plugin to use.
   */
  serve?(def: RouteDefinition): Handler;
}

export function createHttpMethods(
  add: (method: string, path: string, handler: Handler, options: HttpRouteOptions) => void,
  use: (middleware: Middleware | AppMiddleware) => void,
): HttpMethods {
  const verb =
    (method: string): Method =>
    (path, handler, options = {}) =>
      add(method, path, handler, options);
  return {
    get: verb('GET'),
    post: verb('POST'),
    put: verb('PUT'),
    patch: verb('PATCH'),
    delete: verb('DELETE'),
    head: verb('HEAD'),
    options: verb('OPTIONS'),
    route: (method, path, handler, options = {}) => {
      for (const m of Array.isArray(method) ? method : [method]) add(m.toUpperCase(), path, handler, options);
    },
    use,
  };
}
