/** Maps anything thrown during a request to a status and an `{ error: { code, message, details? } }` body. */
import { isMegaError } from '@mega/kernel';
import type { FastifyError } from 'fastify';

export interface ErrorBody {
  code: string;
  message: string;
  details?: unknown;
  stack?: string;
}

/** Fastify's and its plugins' own error codes -> stable Mega codes. */
const FASTIFY_ERROR_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'http.invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'http.invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'http.body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'http.unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'http.invalid_content_length',
  FST_ERR_CTP_INVALID_TYPE: 'http.unsupported_media_type',
  FST_REQ_FILE_TOO_LARGE: 'http.file_too_large',
  FST_PARTS_LIMIT: 'http.too_many_parts',
  FST_FILES_LIMIT: 'http.too_many_files',
  FST_FIELDS_LIMIT: 'http.too_many_fields',
  FST_PROTO_VIOLATION: 'http.bad_request',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'http.unsupported_media_type',
};

/** Fallback by status for 4xx errors without a known code. */
const STATUS_CODES: Record<number, string> = {
  400: 'http.bad_request',
  403: 'http.forbidden',
  404: 'not_found',
  405: 'http.method_not_allowed',
  406: 'http.not_acceptable',
  413: 'http.body_too_large',
  414: 'http.uri_too_long',
  415: 'http.unsupported_media_type',
  431: 'http.headers_too_large',
};

interface AjvLikeError {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** One validation problem as clients see it. */
export interface ValidationDetail {
  /** `body`, `querystring`, `params` or `headers`. */
  in: string;
  /** JSON pointer into that part (`/items/0/name`, `/` for the whole part). */
  path: string;
  message: string;
  keyword: string;
  params?: Record<string, unknown>;
}

export function validationDetails(
  errors: readonly AjvLikeError[],
  where: string,
  max: number,
): { details: ValidationDetail[]; message: string } {
  const details = errors.slice(0, max).map((e) => {
    let path = e.instancePath || '/';
    // `required` points at the parent; name the missing property so the path says what is absent.
    if (e.keyword === 'required' && typeof e.params?.missingProperty === 'string') {
      path = `${e.instancePath || ''}/${e.params.missingProperty}`;
    }
    const detail: ValidationDetail = { in: where, path, message: e.message ?? 'is invalid', keyword: e.keyword ?? 'invalid' };
    if (e.params && Object.keys(e.params).length) detail.params = e.params;
    return detail;
  });
  const first = details[0];
  const more = errors.length - details.length;
  const message = first
    ? `${where}${first.path === '/' ? '' : first.path} ${first.message}${errors.length > 1 ? ` (and ${errors.length - 1} more${more > 0 ? `, ${more} not listed` : ''})` : ''}`
    : `${where} is invalid`;
  return { details, message };
}

const SERVER_MESSAGES: Record<number, string> = {
  501: 'not implemented',
  502: 'bad gateway',
  503: 'service unavailable',
  504: 'gateway timeout',
};

export function mapError(error: unknown, options: { production: boolean; maxDetails: number }): { status: number; body: ErrorBody } {
  if (isMegaError(error)) {
    // A server-side failure's message and details may carry what a driver said (SQL text, sqlState,
    // hosts): in production the client gets the stable code only; the log keeps the rest.
    if (options.production && error.status >= 500) {
      return { status: error.status, body: { code: error.code, message: SERVER_MESSAGES[error.status] ?? 'internal server error' } };
    }
    return { status: error.status, body: error.toJSON() };
  }
  const fe = error as Partial<FastifyError> & { validationContext?: string };
  if (fe && Array.isArray(fe.validation)) {
    const { details, message } = validationDetails(fe.validation as AjvLikeError[], fe.validationContext ?? 'request', options.maxDetails);
    return { status: 400, body: { code: 'validation.failed', message, details } };
  }
  // busboy reports malformed multipart bodies as plain errors.
  if (
    !(fe?.statusCode && fe.statusCode < 500) &&
    typeof fe?.message === 'string' &&
    /^(Multipart: |Malformed part header|Unexpected end of (?:form|multipart data))/.test(fe.message)
  ) {
    return { status: 400, body: { code: 'http.invalid_multipart', message: fe.message } };
  }
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = (fe.code && FASTIFY_ERROR_CODES[fe.code]) ?? STATUS_CODES[status] ?? 'http.bad_request';
    return { status, body: { code, message: fe.message ?? 'bad request' } };
  }
  const body: ErrorBody = {
    code: 'internal',
    message: options.production ? 'internal server error' : (fe?.message ?? String(error)),
  };
  if (!options.production && typeof fe?.stack === 'string') body.stack = fe.stack;
  return { status: status >= 500 && status < 600 ? status : 500, body };
}
