// Who may post: API keys (API_KEYS) and browser origins (CORS_ORIGINS), and the CORS preflight.
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { CORS_ANSWER_HEADERS, type Responder } from './respond.js';

/** `https://*.example.com[:port]` as the scheme before the star and what must follow the subdomain. */
interface Wildcard {
  readonly scheme: string;
  readonly suffix: string;
}

// What may stand for the star: one or more DNS labels as browsers serialise them (lowercase).
const SUBDOMAIN = /^[a-z0-9-]+(\.[a-z0-9-]+)*$/;

export class Access {
  readonly #apiKeys: ReadonlySet<string> | undefined;
  readonly #anyOrigin: boolean;
  readonly #origins: ReadonlySet<string>;
  readonly #wildcards: readonly Wildcard[];

  /** `corsOrigins` as the config checked them: origins, `https://*.example.com` forms, or `*`; empty, any (as unset). */
  constructor(apiKeys: readonly string[], corsOrigins: readonly string[]) {
    this.#apiKeys = apiKeys.length > 0 ? new Set(apiKeys) : undefined;
    this.#anyOrigin = corsOrigins.length === 0 || corsOrigins.includes('*');
    this.#origins = new Set(corsOrigins.filter((origin) => !origin.includes('*')));
    this.#wildcards = corsOrigins
      .filter((origin) => origin.includes('://*.'))
      .map((origin) => {
        const star = origin.indexOf('*');
        return { scheme: origin.slice(0, star), suffix: origin.slice(star + 1) };
      });
  }

  /** Whether a request with this Origin header may post: a listed browser origin, or none (SDKs on servers). */
  originAllowed(origin: string): boolean {
    return origin === '' || this.#anyOrigin || this.#origins.has(origin) || this.#wildcards.some((w) => matches(w, origin));
  }

  /** The Origin to echo in access-control-allow-origin, or '' for none. */
  corsOrigin(origin: string): string {
    return origin !== '' && this.originAllowed(origin) ? origin : '';
  }

  authorized(req: HttpRequest): boolean {
    const keys = this.#apiKeys;
    if (keys === undefined) return true;
    const bearer = req.getHeader('authorization');
    return (
      keys.has(req.getHeader('x-api-key')) ||
      // The scheme is case-insensitive (RFC 9110 §11.1).
      (bearer.length > 7 && bearer.slice(0, 7).toLowerCase() === 'bearer ' && keys.has(bearer.slice(7).trim())) ||
      // navigator.sendBeacon cannot set headers.
      keys.has(req.getQuery('api_key') ?? '')
    );
  }

  preflight(res: HttpResponse, req: HttpRequest, respond: Responder): void {
    const origin = this.corsOrigin(req.getHeader('origin'));
    respond.sendRaw(
      res,
      '204',
      origin === ''
        ? []
        : [
            ['access-control-allow-origin', origin],
            ...CORS_ANSWER_HEADERS,
            ['access-control-allow-methods', 'POST, OPTIONS'],
            ['access-control-allow-headers', 'content-type, content-encoding, authorization, x-api-key, idempotency-key'],
            ['access-control-max-age', '86400'],
          ],
    );
  }
}

function matches({ scheme, suffix }: Wildcard, origin: string): boolean {
  return (
    origin.length > scheme.length + suffix.length &&
    origin.startsWith(scheme) &&
    origin.endsWith(suffix) &&
    SUBDOMAIN.test(origin.slice(scheme.length, origin.length - suffix.length))
  );
}
