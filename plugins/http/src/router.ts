/** The object route files receive: `export default (router) => { router.http.get('/', Home.index) }`. */
import type { App, MegaContext, RouteDefinition, RouteOptions } from '@mega/kernel';
import type { FastifyReply, FastifyRequest } from 'fastify';

export type Handler = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext) => unknown;

type Method = (path: string, handler: Handler, options?: RouteOptions) => void;

export interface HttpMethods {
  get: Method;
  post: Method;
  put: Method;
  patch: Method;
  delete: Method;
  head: Method;
  options: Method;
  route(method: string | string[], path: string, handler: Handler, options?: RouteOptions): void;
}

/** Other plugins add members (e.g. `router.ws`) by declaration merging plus `HttpServer.extendRouter`. */
export interface Router {
  readonly app: App;
  readonly http: HttpMethods;
}

/** Builds one router member for an app; `add` queues a route definition for the `route` hook. */
export type RouterExtension = (
  app: App,
  add: (def: Omit<RouteDefinition, 'app' | 'meta'> & { meta?: Record<string, unknown> }) => void,
) => unknown;

export function createHttpMethods(add: (method: string, path: string, handler: Handler, options: RouteOptions) => void): HttpMethods {
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
  };
}
